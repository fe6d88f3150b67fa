package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultPort is the port `daemon --listen` serves HTTPS on when the
// address names none.
const DefaultPort = "8443"

// TrustToken is what `trust add` hands out, encoded (Encode): all a client
// needs to find this daemon, know it by its certificate, and be trusted
// once. The secret works once, until ExpiresAt.
type TrustToken struct {
	Name        string    `json:"name"`
	Addresses   []string  `json:"addresses"`
	Fingerprint string    `json:"fingerprint"`
	Secret      string    `json:"secret"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// Encode is the token as one word a user can paste.
func (t TrustToken) Encode() string {
	data, _ := json.Marshal(t) // strings and a time: cannot fail
	return base64.RawURLEncoding.EncodeToString(data)
}

// ParseTrustToken decodes what Encode made.
func ParseTrustToken(s string) (TrustToken, error) {
	var t TrustToken
	data, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err == nil {
		err = json.Unmarshal(data, &t)
	}
	if err == nil && (t.Secret == "" || t.Fingerprint == "" || len(t.Addresses) == 0) {
		err = errors.New("it lacks a secret, fingerprint or address")
	}
	if err != nil {
		return TrustToken{}, fmt.Errorf("%w: token: not one that 'polyvisor trust add' printed (%v); copy it whole", ErrInvalid, err)
	}
	return t, nil
}

// TrustTokenCreate is the body of POST /1.0/trust/tokens.
type TrustTokenCreate struct {
	Name string `json:"name"`
	// Web asks for a browser's one-time login link instead.
	Web bool `json:"web,omitempty"`
	// ExpiresIn is a Go duration; empty for the daemon's default.
	ExpiresIn string `json:"expiresIn,omitempty"`
}

// TrustTokenIssued answers POST /1.0/trust/tokens: the token, encoded,
// which holds the secret; shown once, kept nowhere.
type TrustTokenIssued struct {
	Name  string `json:"name"`
	Token string `json:"token,omitempty"`
	// URLs are a web token's login links, one per address of the daemon.
	URLs      []string  `json:"urls,omitempty"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// TrustJoin is the body of POST /1.0/trust: a client that is not trusted
// yet redeems a token's secret for the certificate it connected with.
type TrustJoin struct {
	Secret string `json:"secret"`
}

// Kinds of TrustEntry.
const (
	TrustKindClient   = "client"    // a trusted client certificate
	TrustKindToken    = "token"     // a token not used yet
	TrustKindWeb      = "web"       // a browser user, logged in by a web token
	TrustKindWebToken = "web-token" // a web login link not used yet
)

// TrustEntry is one line of GET /1.0/trust. It never holds a secret.
type TrustEntry struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Fingerprint is the client certificate's; empty for a token.
	Fingerprint string    `json:"fingerprint,omitempty"`
	AddedAt     time.Time `json:"addedAt"`
	// ExpiresAt is a token's.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// Health is the answer of GET /1.0/health, the one route that answers
// without authentication.
type Health struct {
	Status string `json:"status"`
}
