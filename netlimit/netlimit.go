// Package netlimit bounds how many connections a listener holds open. It owns nothing but a count:
// the connections themselves belong to whoever accepted them.
package netlimit

import (
	"net"
	"sync"
)

// Listener accepts at most Max connections at a time from the listener it wraps. A connection beyond
// the bound is closed at once, not left waiting in the kernel's backlog: a client that opens thousands
// of connections and sends nothing then costs a closed socket each, and the process stays clear of its
// descriptor limit, where every accept (the node port's too) would fail.
type Listener struct {
	net.Listener
	slots chan struct{}
	// refused, when set, is told about each connection closed for want of a slot.
	refused func(remote net.Addr)
}

// New wraps ln so that it holds at most max connections; refused may be nil.
func New(ln net.Listener, max int, refused func(remote net.Addr)) *Listener {
	return &Listener{Listener: ln, slots: make(chan struct{}, max), refused: refused}
}

// Accept returns the next connection for which there is a slot; its Close frees the slot.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &conn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			c.Close()
			if l.refused != nil {
				l.refused(c.RemoteAddr())
			}
		}
	}
}

// Open is how many accepted connections are still open.
func (l *Listener) Open() int { return len(l.slots) }

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
