package store

// storage.go: what a storage error means and what the operator should do about it. A full disk, a
// filesystem remounted read-only, a failing device and a damaged file all reach us as errors (or, from
// BoltDB and Raft, as panics); each needs a different action, and only the last is corruption. Telling
// an operator "corrupt" for a read-only mount invites them to wipe a healthy data dir.

import (
	"errors"
	"fmt"
	"runtime/debug"
	"syscall"

	"go.etcd.io/bbolt"
)

// The kinds of storage fault; every storage error the store reports wraps exactly one of them.
var (
	// ErrDiskFull: the filesystem holding the data dir has no space (or quota) left.
	ErrDiskFull = errors.New("disk full")
	// ErrReadOnly: the filesystem holding the data dir is mounted read-only. The data is not damaged.
	ErrReadOnly = errors.New("read-only filesystem")
	// ErrDiskIO: the device returned an I/O error.
	ErrDiskIO = errors.New("disk I/O error")
	// ErrPermission: the process may not read or write the data dir.
	ErrPermission = errors.New("permission denied")
	// ErrCorrupt: a file in the data dir is damaged (BoltDB pages, checksums, Raft state that cannot
	// be decoded). Only this kind calls for moving the data dir aside.
	ErrCorrupt = errors.New("data dir is corrupt")
	// ErrStorage: any other storage error.
	ErrStorage = errors.New("storage error")
)

// storageKind names the fault behind err (ErrStorage when it is none of the known ones).
func storageKind(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrDiskFull
	case errors.Is(err, syscall.EROFS):
		return ErrReadOnly
	case errors.Is(err, syscall.EIO):
		return ErrDiskIO
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return ErrPermission
	case errors.Is(err, ErrCorrupt), errors.Is(err, bbolt.ErrInvalid), errors.Is(err, bbolt.ErrChecksum),
		errors.Is(err, bbolt.ErrVersionMismatch), errors.Is(err, bbolt.ErrInvalidMapping):
		return ErrCorrupt
	}
	return ErrStorage
}

// storageAdvice is what an operator should do about a fault of kind in data dir dir.
func storageAdvice(kind error, dir string) string {
	switch kind {
	case ErrDiskFull:
		return fmt.Sprintf("free space on the filesystem that holds %s (or move the data dir to a larger one) and restart the node; the data dir is intact, do not wipe it", dir)
	case ErrReadOnly:
		return fmt.Sprintf("the filesystem that holds %s is mounted read-only (the kernel does this after disk errors: check dmesg); remount it read-write and restart the node; the data dir is not corrupt, do not wipe it", dir)
	case ErrDiskIO:
		return fmt.Sprintf("the device that holds %s is failing (check dmesg and SMART); replace the disk, then restart the node on a copy of the data dir, or empty so that it rejoins and copies the log from the others", dir)
	case ErrPermission:
		return fmt.Sprintf("let the user that runs raftkv read and write %s and everything in it, then restart the node", dir)
	case ErrCorrupt:
		return fmt.Sprintf("move %s aside (keep it for inspection) and restart the node with an empty data dir: it rejoins and copies the log from the others; if no other member has the data, restore from a backup", dir)
	}
	return fmt.Sprintf("check the filesystem that holds %s, then restart the node", dir)
}

// storageError wraps err from doing what (e.g. "open raft log /d/raft.db") with its kind and the
// operator's action: "disk full: open raft log /d/raft.db: <err>; free space on ...".
func storageError(what, dir string, err error) error {
	kind := storageKind(err)
	return fmt.Errorf("%w: %s: %w; %s", kind, what, err, storageAdvice(kind, dir))
}

// startupStorageError is storageError for a fault that stops the node from starting: an operator must
// act (ErrDataDir) and the message says how.
func startupStorageError(what, dir string, err error) error {
	return fmt.Errorf("%w: %w", ErrDataDir, storageError(what, dir, err))
}

// panicError is a panic recovered at a storage boundary, as an error of kind ErrCorrupt: BoltDB and
// Raft panic on pages and entries they cannot decode.
type panicError struct{ value any }

func (p panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }
func (p panicError) Unwrap() error { return ErrCorrupt }

// recoverCorrupt turns a panic in the current goroutine into *err. A memory fault (a page number past
// the end of the mapped file) panics too instead of killing the process, as far as Go allows it.
func recoverCorrupt(err *error) {
	if p := recover(); p != nil {
		*err = panicError{p}
	}
}

// panicOnFault makes a memory fault in the calling goroutine a panic that recoverCorrupt can catch;
// the returned func restores the previous setting. BoltDB reads its file through mmap, so a damaged
// page number is a read past the end of the mapping.
func panicOnFault() (restore func()) {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}
