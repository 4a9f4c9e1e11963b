package approval

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Action ids of the buttons in an approval message.
const (
	ActionApprove        = "tf_approve"
	ActionApproveSession = "tf_approve_session"
	ActionDeny           = "tf_deny"
)

// SlackWindow is how far a callback's timestamp may be from now.
const SlackWindow = 5 * time.Minute

// maxSlackBody bounds a callback body.
const maxSlackBody = 64 << 10

// A SlackVerifier checks Slack's request signatures and refuses replays.
type SlackVerifier struct {
	secret []byte
	now    func() time.Time
	mu     sync.Mutex
	seen   map[string]time.Time // signature -> timestamp, kept for the window
}

// NewSlackVerifier verifies with the signing secret; now nil means
// time.Now.
func NewSlackVerifier(secret string, now func() time.Time) *SlackVerifier {
	if now == nil {
		now = time.Now
	}
	return &SlackVerifier{secret: []byte(secret), now: now, seen: map[string]time.Time{}}
}

// Verify checks X-Slack-Signature (v0=hex(HMAC-SHA256(secret,
// "v0:"+timestamp+":"+body))) and X-Slack-Request-Timestamp (within
// SlackWindow of now), and refuses a signature already accepted.
func (v *SlackVerifier) Verify(h http.Header, body []byte) error {
	if len(v.secret) == 0 {
		return errors.New("no slack signing secret is configured")
	}
	ts := h.Get("X-Slack-Request-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("missing or malformed X-Slack-Request-Timestamp")
	}
	at := time.Unix(sec, 0)
	now := v.now()
	if d := now.Sub(at); d > SlackWindow || d < -SlackWindow {
		return errors.New("slack request timestamp is outside the 5 minute window")
	}
	sig := h.Get("X-Slack-Signature")
	hexSig, ok := strings.CutPrefix(sig, "v0=")
	got, err := hex.DecodeString(hexSig)
	if !ok || err != nil || len(got) != sha256.Size {
		return errors.New("missing or malformed X-Slack-Signature")
	}
	mac := hmac.New(sha256.New, v.secret)
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return errors.New("slack signature does not verify")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for s, t := range v.seen {
		if now.Sub(t) > SlackWindow {
			delete(v.seen, s)
		}
	}
	if _, dup := v.seen[hexSig]; dup {
		return errors.New("slack request replayed")
	}
	v.seen[hexSig] = at
	return nil
}

// SlackSign returns the X-Slack-Signature value for body at timestamp ts,
// as Slack computes it.
func SlackSign(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// A SlackCallback is the part of a block_actions interaction tf uses.
type SlackCallback struct {
	ID     string // approval id
	Answer Answer
}

// ParseSlackCallback decodes an interactivity request body
// (payload=<JSON> form-encoded) into the answer it carries.
func ParseSlackCallback(body []byte) (SlackCallback, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return SlackCallback{}, fmt.Errorf("decoding slack callback: %w", err)
	}
	var p struct {
		Type string `json:"type"`
		User struct {
			ID       string `json:"id"`
			Username string `json:"username"`
		} `json:"user"`
		Actions []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"actions"`
	}
	if err := json.Unmarshal([]byte(form.Get("payload")), &p); err != nil {
		return SlackCallback{}, fmt.Errorf("decoding slack callback payload: %w", err)
	}
	if p.Type != "block_actions" || len(p.Actions) != 1 {
		return SlackCallback{}, errors.New("slack callback is not one button press")
	}
	who := p.User.Username
	if who == "" {
		who = p.User.ID
	}
	if who == "" {
		return SlackCallback{}, errors.New("slack callback names no user")
	}
	a := p.Actions[0]
	if !validID(a.Value) {
		return SlackCallback{}, errors.New("slack callback carries no approval id")
	}
	cb := SlackCallback{ID: a.Value, Answer: Answer{Approver: "slack:" + who, Reason: "answered in Slack"}}
	switch a.ActionID {
	case ActionApprove:
		cb.Answer.Approve = true
	case ActionApproveSession:
		cb.Answer.Approve, cb.Answer.Session = true, true
	case ActionDeny:
	default:
		return SlackCallback{}, fmt.Errorf("unknown slack action %q", a.ActionID)
	}
	return cb, nil
}

// validID reports whether s looks like an id made by NewID.
func validID(s string) bool {
	if len(s) < 4 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// SlackHandler serves Slack's interactivity callbacks: verified, parsed
// and passed to answer.
func SlackHandler(v *SlackVerifier, answer func(id string, a Answer) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSlackBody+1))
		if err != nil || len(body) > maxSlackBody {
			http.Error(w, "unreadable or oversized body", http.StatusBadRequest)
			return
		}
		if err := v.Verify(r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		cb, err := ParseSlackCallback(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := answer(cb.ID, cb.Answer); err != nil {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"response_type": "ephemeral", "replace_original": false, "text": "tf: " + err.Error()})
			return
		}
		verb := "denied"
		if cb.Answer.Session {
			verb = "approved for this session"
		} else if cb.Answer.Approve {
			verb = "approved"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"replace_original": false, "text": fmt.Sprintf("tf: %s %s by %s", cb.ID, verb, cb.Answer.Approver)})
	})
}
