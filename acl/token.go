package acl

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Token is a bearer credential. Only the SHA-256 of its secret is ever stored or replicated: the secret
// is 256 random bits, so a fast hash is as good as a slow one against guessing (nothing to brute-force),
// and a request pays one SHA-256 (≈0.3 µs), not a bcrypt (tens of ms; etcd#3223, #9615).
type Token struct {
	AccessorID  string   `json:"accessor_id"` // public id: audit lines, list, delete
	SecretHash  [32]byte `json:"-"`
	Description string   `json:"description,omitempty"`
	Policies    []string `json:"policies,omitempty"`
	Management  bool     `json:"management,omitempty"` // every right, including ACLs
	CreateIndex uint64   `json:"create_index,omitempty"`
}

// secretPrefix marks raftkv secrets, so secret scanners and humans recognise a leaked one.
const secretPrefix = "rkv_"

// NewToken makes a token with a fresh accessor id and secret from rand (crypto/rand in production),
// and returns the secret: the only time it exists outside the client.
func NewToken(rand io.Reader, description string, policies []string, management bool) (*Token, string, error) {
	var b [16 + 32]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, "", fmt.Errorf("acl: token randomness: %w", err)
	}
	id := b[:16]
	id[6] = id[6]&0x0f | 0x40 // a version-4 UUID, the format operators expect of an id
	id[8] = id[8]&0x3f | 0x80
	h := hex.EncodeToString(id)
	secret := secretPrefix + base64.RawURLEncoding.EncodeToString(b[16:])
	t := &Token{
		AccessorID:  h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:],
		SecretHash:  HashSecret(secret),
		Description: description,
		Policies:    slices.Clone(policies),
		Management:  management,
	}
	return t, secret, t.Validate()
}

// HashSecret is what the state stores and looks a request's secret up by.
func HashSecret(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// Validate checks a token's fields as a client submits them.
func (t *Token) Validate() error {
	if t.AccessorID == "" || len(t.AccessorID) > MaxNameLen {
		return fmt.Errorf("%w: accessor id must be 1–%d bytes", ErrInvalid, MaxNameLen)
	}
	if len(t.Description) > MaxDescLen {
		return fmt.Errorf("%w: description over %d bytes", ErrInvalid, MaxDescLen)
	}
	if len(t.Policies) > MaxPolicies {
		return fmt.Errorf("%w: %d policies, at most %d", ErrInvalid, len(t.Policies), MaxPolicies)
	}
	for _, p := range t.Policies {
		if err := checkName("policy name", p); err != nil {
			return err
		}
	}
	if !t.Management && len(t.Policies) == 0 {
		return fmt.Errorf("%w: a token needs at least one policy (or to be a management token)", ErrInvalid)
	}
	return nil
}

// SecretFromHeader extracts a token from "Authorization: Bearer <secret>" or "X-Raftkv-Token: <secret>".
// It returns "" when neither is present.
func SecretFromHeader(authorization, xToken string) string {
	if xToken != "" {
		return strings.TrimSpace(xToken)
	}
	if scheme, rest, ok := strings.Cut(authorization, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(rest)
	}
	return ""
}
