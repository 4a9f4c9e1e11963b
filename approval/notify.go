package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is the approvals: section of $TF_HOME/config.yaml.
//
//	approvals:
//	  webhook_url: https://hooks.slack.com/services/...
//	  slack_signing_secret_name: slack-signing   # a keyring secret
//	  slack_listen: 127.0.0.1:8787
type Config struct {
	// WebhookURL receives each pending approval as a Slack
	// incoming-webhook message.
	WebhookURL string `yaml:"webhook_url,omitempty" json:"webhook_url,omitempty"`
	// SlackSigningSecretName names the keyring secret that signs Slack's
	// interactivity callbacks.
	SlackSigningSecretName string `yaml:"slack_signing_secret_name,omitempty" json:"slack_signing_secret_name,omitempty"`
	// SlackListen is the address of the interactivity endpoint; empty
	// means none.
	SlackListen string `yaml:"slack_listen,omitempty" json:"slack_listen,omitempty"`
}

// Message is the JSON posted for one pending approval: a Slack
// incoming-webhook message, with the approval itself for other receivers.
type Message struct {
	Text     string           `json:"text"`
	Blocks   []map[string]any `json:"blocks"`
	Approval Request          `json:"tf_approval"`
}

// NewMessage builds the message for r.
func NewMessage(r Request) Message {
	var b strings.Builder
	if r.Agent != "" {
		fmt.Fprintf(&b, "*tf: %s needs approval* (agent %s, gateway %s, rule %s)\n", r.Action, r.Agent, r.Gateway, r.Rule)
	} else {
		fmt.Fprintf(&b, "*tf: %s needs approval* (gateway %s, rule %s)\n", r.Action, r.Gateway, r.Rule)
	}
	if r.Reason != "" {
		fmt.Fprintf(&b, "> %s\n", r.Reason)
	}
	if r.Method != "" {
		fmt.Fprintf(&b, "`%s %s%s`\n", r.Method, r.Host, r.Path)
	}
	for _, k := range sortedKeys(r.Resource) {
		fmt.Fprintf(&b, "• %s: %s\n", k, r.Resource[k])
	}
	if len(r.Params) > 0 {
		p, _ := json.Marshal(r.Params)
		fmt.Fprintf(&b, "params: `%s`\n", truncate(string(p), 1500))
	}
	fmt.Fprintf(&b, "expires %s\n", r.Expires.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Answer with `tf approvals approve %s` or `tf approvals deny %s` (id %s).", r.ID, r.ID, r.ID)
	text := b.String()
	button := func(label, action, style string) map[string]any {
		btn := map[string]any{
			"type": "button", "action_id": action, "value": r.ID,
			"text": map[string]any{"type": "plain_text", "text": label},
		}
		if style != "" {
			btn["style"] = style
		}
		return btn
	}
	return Message{
		Text: text,
		Blocks: []map[string]any{
			{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": text}},
			{"type": "actions", "block_id": "tf_approval", "elements": []any{
				button("Approve", ActionApprove, "primary"),
				button("Approve for session", ActionApproveSession, ""),
				button("Deny", ActionDeny, "danger"),
			}},
		},
		Approval: r,
	}
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// webhookQueue bounds the posts waiting to be sent.
const webhookQueue = 1024

// A Webhook posts each pending approval to a URL, one at a time from its
// own goroutine, with a plain HTTP client: never through the agent's
// proxy.
type Webhook struct {
	url     string
	client  *http.Client
	queue   chan Request
	done    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	once    sync.Once
	failed  atomic.Int64
	dropped atomic.Int64
	mu      sync.Mutex
	lastErr error
}

// NewWebhook starts a webhook channel posting to url; client nil means one
// with a 10 s timeout and no proxy.
func NewWebhook(url string, client *http.Client) *Webhook {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, ForceAttemptHTTP2: true}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Webhook{url: url, client: client, queue: make(chan Request, webhookQueue), done: make(chan struct{}), ctx: ctx, cancel: cancel}
	go w.run()
	return w
}

// Notify queues r; when the queue is full it is dropped and counted (the
// approval is still listed by tf approvals).
func (w *Webhook) Notify(r Request) {
	select {
	case <-w.ctx.Done():
		w.dropped.Add(1)
	case w.queue <- r:
	default:
		w.dropped.Add(1)
	}
}

func (w *Webhook) run() {
	defer close(w.done)
	for {
		select {
		case <-w.ctx.Done():
			return
		case r := <-w.queue:
			if err := w.post(r); err != nil {
				w.failed.Add(1)
				w.mu.Lock()
				w.lastErr = err
				w.mu.Unlock()
			}
		}
	}
}

func (w *Webhook) post(r Request) error {
	body, err := json.Marshal(NewMessage(r))
	if err != nil {
		return fmt.Errorf("encoding approval message: %w", err)
	}
	req, err := http.NewRequestWithContext(w.ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("posting approval %s: %w", r.ID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		// The URL can carry a token (Slack's does): keep it out of errors.
		return fmt.Errorf("posting approval %s to the webhook: %w", r.ID, stripURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting approval %s to the webhook: status %d", r.ID, resp.StatusCode)
	}
	return nil
}

// Stats reports failed and dropped posts, and the last error.
func (w *Webhook) Stats() (failed, dropped int64, last error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed.Load(), w.dropped.Load(), w.lastErr
}

// Close stops the channel; queued posts not yet sent are dropped.
func (w *Webhook) Close() {
	w.once.Do(w.cancel)
	<-w.done
}

// stripURL drops the URL from a client error: it may hold a token.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
