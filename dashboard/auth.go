package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// cookieName is the session cookie.
const cookieName = "tf_dashboard"

// csrfHeader carries the CSRF token of requests made by the page's script.
const csrfHeader = "X-CSRF-Token"

// maxLoginTokens bounds the unused login tokens kept.
const maxLoginTokens = 64

type session struct {
	csrf    string
	expires time.Time
	// flash and flashErr are shown once, on the page after a POST.
	flash, flashErr string
}

// authenticator keeps one-time login tokens and sessions. Both are held
// by the SHA-256 of their value, so a lookup compares digests, not
// secrets, and a memory dump does not hold a usable cookie.
type authenticator struct {
	ttl      time.Duration
	mu       sync.Mutex
	logins   map[[32]byte]struct{}
	sessions map[[32]byte]*session
}

func newAuthenticator(ttl time.Duration) *authenticator {
	return &authenticator{ttl: ttl, logins: map[[32]byte]struct{}{}, sessions: map[[32]byte]*session{}}
}

// randomToken returns 256 random bits, URL-safe.
func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func (a *authenticator) newLoginToken() (string, error) {
	tok, err := randomToken()
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.logins) >= maxLoginTokens {
		return "", fmt.Errorf("too many unused login links (%d)", maxLoginTokens)
	}
	a.logins[sha256.Sum256([]byte(tok))] = struct{}{}
	return tok, nil
}

// login exchanges a one-time token for a new session: it returns the
// session cookie's value, or false when the token is unknown or used.
func (a *authenticator) login(token string, now time.Time) (string, bool, error) {
	if token == "" {
		return "", false, nil
	}
	key := sha256.Sum256([]byte(token))
	a.mu.Lock()
	_, ok := a.logins[key]
	delete(a.logins, key) // used once, whatever follows
	a.mu.Unlock()
	if !ok {
		return "", false, nil
	}
	id, err := randomToken()
	if err != nil {
		return "", false, err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, s := range a.sessions {
		if now.After(s.expires) {
			delete(a.sessions, k)
		}
	}
	a.sessions[sha256.Sum256([]byte(id))] = &session{csrf: csrf, expires: now.Add(a.ttl)}
	return id, true, nil
}

// session returns the live session of r's cookie.
func (a *authenticator) session(r *http.Request, now time.Time) (*session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, false
	}
	key := sha256.Sum256([]byte(c.Value))
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[key]
	if !ok {
		return nil, false
	}
	if now.After(s.expires) {
		delete(a.sessions, key)
		return nil, false
	}
	return s, true
}

// validCSRF compares a presented token with the session's in constant
// time.
func (s *session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// setFlash leaves a message for the next page the session renders.
func (a *authenticator) setFlash(s *session, msg string, isErr bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if isErr {
		s.flashErr = msg
	} else {
		s.flash = msg
	}
}

// popFlash returns and clears the session's messages.
func (a *authenticator) popFlash(s *session) (msg, errMsg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	msg, errMsg = s.flash, s.flashErr
	s.flash, s.flashErr = "", ""
	return msg, errMsg
}
