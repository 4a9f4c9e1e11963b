package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tameflare/tf/rules"
)

// A Governor decides and records the messages of one stdio server; the
// gateway implements it (the same decisions, records, approvals and kill
// switch as for HTTP).
type Governor interface {
	// Decide decides the actions of one line and records the decisions
	// durably before it returns; decisions that cannot be recorded are
	// denials. When err is set the line could not be classified: actions
	// is nil, and Decide records a refusal with err as the reason.
	Decide(ctx context.Context, actions []rules.Action, err error) Ruling
	// HideItems returns which items to remove from lists (tools,
	// resources, resource templates, prompts) now, or nil when the policy
	// does not filter them.
	HideItems() Hider
}

// A BatchGovernor decides several lines at once, recording all their
// decisions with one wait: the relay uses it for lines that arrive
// together, a burst of calls.
type BatchGovernor interface {
	Governor
	// DecideLines is Decide for each line, in order: one Ruling per line.
	DecideLines(ctx context.Context, lines []Line) []Ruling
}

// A ResultInspector is a Governor that reads tool results and resource
// contents before the client does (see Inspector); InspectResults
// returns nil when there is nothing to look for.
type ResultInspector interface {
	InspectResults() Inspector
}

// A ToolPinner is a Governor that pins the tools lists show (see
// Pinner); PinTools returns nil when the policy pins nothing.
type ToolPinner interface {
	PinTools() Pinner
}

// A ParamsReader is a Governor that says what its rules read of params, so
// that the relay decodes only those tool-call arguments (see
// Connector.DecodeParams).
type ParamsReader interface {
	ParamsRead() rules.ParamsRead
}

// Line is what a BatchGovernor decides of one line: its actions, or the
// error that kept it from being classified.
type Line struct {
	Actions []rules.Action
	Err     error
	// IDs holds the JSON-RPC id of each action's message, as JSON ("" for
	// a notification), for the records.
	IDs []string
}

// Ruling is a Governor's answer for one line.
type Ruling struct {
	// RequestID is the line's id in the audit log.
	RequestID string
	// Decisions holds one decision per action (one for an unclassified
	// line).
	Decisions []rules.Decision
	// Hold, set when a decision is require_approval, waits for a person
	// (or the expiry) and returns the final decisions, recorded, and for
	// an approved line the context that the kill switch ends (as Cut).
	Hold func(ctx context.Context) ([]rules.Decision, context.Context)
	// Done records how the line ended; it may be nil. It is called on
	// the relay's own goroutines, so it queues the record rather than
	// waiting for it to be durable.
	Done func(Outcome)
	// Cut, if set, ends when the kill switch stops the server's traffic:
	// requests still unanswered are then answered with an error.
	Cut context.Context
}

// Outcome describes how one relayed line ended.
type Outcome struct {
	// Refused is set when tf answered in the server's place.
	Refused bool
	// Err says why a forwarded request got no answer, or the error the
	// server answered with.
	Err      error
	Duration time.Duration
	// Bytes is the length of the line sent to the server.
	Bytes int
	// IsError is the isError of the line's tool results: true when one
	// of them reported an error, nil when none said.
	IsError *bool
}

// Relay relays newline-delimited JSON-RPC between an MCP client and a
// stdio server, governing every line the client sends.
type Relay struct {
	// Server names the server in actions (mcp.<server>.<tool>).
	Server   string
	Governor Governor
	// ClientIn and ClientOut are the client's side (tf's stdin and stdout
	// under tf mcp wrap); ServerIn and ServerOut the server's (the child's
	// stdin and stdout).
	ClientIn  io.Reader
	ClientOut io.Writer
	ServerIn  io.WriteCloser
	ServerOut io.Reader
	// MaxMessage bounds a line from the client (default MaxMessageBytes).
	MaxMessage int
	// Window is how many lines may be deciding at once (default 256);
	// lines are still forwarded in order, except held ones, which go on
	// when a person approves them.
	Window int
}

type slot struct {
	line    []byte
	readErr error
	msgs    []Message
	batch   bool
	actions []rules.Action
	ruling  Ruling
	ready   chan struct{}
	// errCode and errID answer a line that could not be classified.
	errCode int
	errID   []byte
}

// pendingLine is a forwarded line whose requests await answers.
type pendingLine struct {
	start   time.Time
	left    int
	done    func(Outcome)
	bytes   int
	errText string
	isError *bool
	// calls holds the line's tools/call and resources/read requests by
	// the keys of their ids.
	calls map[string]Call
	// slot and cut are the line and the context that the kill switch
	// ends, for cutting the line off while it awaits answers.
	slot *slot
	cut  context.Context
}

type relay struct {
	*Relay
	ctx    context.Context
	cancel context.CancelFunc

	clientMu sync.Mutex // serialises lines to the client
	serverMu sync.Mutex // serialises lines to the server

	mu        sync.Mutex
	pending   map[string]*pendingLine // request id key → its line
	lists     map[string]ListKind     // ids of forwarded list requests
	closed    bool                    // the server's output ended
	stopped   bool                    // Run is returning: work runs inline
	inputDone bool                    // the client's input ended
	holds     int                     // lines waiting for approval
	serverEnd bool                    // the server's input is closed
	wg        sync.WaitGroup          // goroutines of spawn
	// watched holds the cut contexts with a hook that cuts off their
	// pending lines. The governor shares one context among the lines of
	// a connector, so a hook per context rather than per line.
	watched map[context.Context]bool
	// reads is the governor's ParamsRead, when it has one.
	reads func() rules.ParamsRead
}

// spawn runs f in a goroutine that Run waits for; once Run is returning,
// f runs inline.
func (r *relay) spawn(f func()) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		f()
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		f()
	}()
}

// closeServerWhenIdle closes the server's input once the client's input
// has ended and no held line can still be sent.
func (r *relay) closeServerWhenIdle() {
	r.mu.Lock()
	end := r.inputDone && r.holds == 0 && !r.serverEnd
	if end {
		r.serverEnd = true
	}
	r.mu.Unlock()
	if end {
		r.serverMu.Lock()
		r.ServerIn.Close()
		r.serverMu.Unlock()
	}
}

// Run relays until the server's output ends (the child exited or closed
// its stdout), and returns. When the client's input ends, the server's
// input is closed once every line read so far is decided and sent, so that
// the server ends in turn. ctx cancels waits for approval.
func (rl *Relay) Run(ctx context.Context) error {
	if rl.Governor == nil || rl.Server == "" {
		return errors.New("mcp relay: no governor or no server name")
	}
	r := &relay{Relay: rl, pending: map[string]*pendingLine{}, lists: map[string]ListKind{}, watched: map[context.Context]bool{}}
	if pr, ok := rl.Governor.(ParamsReader); ok {
		r.reads = pr.ParamsRead
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	defer r.cancel()
	if r.MaxMessage <= 0 {
		r.MaxMessage = MaxMessageBytes
	}
	if r.Window <= 0 {
		r.Window = 256
	}
	toClient := make(chan error, 1)
	go func() { toClient <- r.fromServer() }()
	go r.fromClient()
	err := <-toClient
	r.cancel() // pending approvals end: nobody is left to answer
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.wg.Wait()
	r.finish(errors.New("the server closed its output before answering"))
	return err
}

// maxGroup bounds the lines decided together.
const maxGroup = 64

// fromClient reads, decides (several lines at once) and forwards in order.
// Lines are decided by up to Window deciders, started as lines arrive and
// kept: a decision goes deep (rules, the audit record), and a goroutine
// per line would grow a new stack for each. Lines that arrive together (a
// burst: whatever is already buffered after a line) are decided as one
// group, their decisions recorded with one wait when the governor can.
func (r *relay) fromClient() {
	q := make(chan *slot, r.Window)
	work := make(chan []*slot)
	defer close(work)
	deciders := 0
	decider := func() {
		for group := range work {
			r.decideGroup(group)
		}
	}
	go func() {
		defer func() {
			r.mu.Lock()
			r.inputDone = true
			r.mu.Unlock()
			r.closeServerWhenIdle()
		}()
		for s := range q {
			<-s.ready
			r.dispatch(s)
		}
	}()
	defer close(q)
	br := bufio.NewReaderSize(r.ClientIn, 64<<10)
	var group []*slot
	for {
		line, err := readLine(br, r.MaxMessage)
		if len(bytes.TrimSpace(line)) > 0 || errors.Is(err, errLineTooLong) {
			group = append(group, &slot{line: line, readErr: err, ready: make(chan struct{})})
		}
		ended := err != nil && !errors.Is(err, errLineTooLong)
		if !ended && len(group) < maxGroup && lineBuffered(br) {
			continue // more of the burst is here already
		}
		if len(group) > 0 {
			// q has room for Window lines: a group waits for room line by
			// line, so that a long burst is decided as the window allows.
			select {
			case work <- group:
			default:
				if deciders < r.Window {
					deciders++
					go decider()
				}
				select {
				case work <- group:
				case <-r.ctx.Done():
					return
				}
			}
			for _, s := range group {
				q <- s
			}
			group = nil
		}
		if ended {
			return
		}
	}
}

// lineBuffered reports whether br holds a whole line already.
func lineBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// decideGroup classifies and decides the lines of a group, then releases
// them to the dispatcher.
func (r *relay) decideGroup(group []*slot) {
	errs := make([]error, len(group))
	for i, s := range group {
		errs[i] = r.classify(s)
	}
	if bg, ok := r.Governor.(BatchGovernor); ok {
		lines := make([]Line, len(group))
		for i, s := range group {
			lines[i] = Line{Actions: s.actions, Err: errs[i]}
			if errs[i] == nil {
				lines[i].IDs = make([]string, len(s.msgs))
				for j := range s.msgs {
					lines[i].IDs[j] = string(s.msgs[j].ID)
				}
			} else if s.errID != nil {
				lines[i].IDs = []string{string(s.errID)}
			}
		}
		for i, ruling := range bg.DecideLines(r.ctx, lines) {
			group[i].ruling = ruling
		}
	} else {
		for i, s := range group {
			s.ruling = r.Governor.Decide(r.ctx, s.actions, errs[i])
		}
	}
	for i, s := range group {
		if errs[i] != nil {
			r.answerUnclassified(s, errs[i])
		}
		close(s.ready)
	}
}

// classify parses a line and returns its actions' error, if any.
func (r *relay) classify(s *slot) error {
	var err error
	switch {
	case s.readErr != nil:
		err = fmt.Errorf("MCP message larger than %d bytes", r.MaxMessage)
		s.errID = leadingID(s.line)
		s.line = nil
	default:
		s.msgs, s.batch, err = parse(s.line, argsRead(r.reads))
		if err == nil {
			s.actions, err = Actions(r.Server, s.msgs)
		}
	}
	if err != nil {
		s.actions = nil
	}
	return err
}

// answerUnclassified sets how a line that could not be classified is
// answered: with an error to the one request the line seems to be, else
// to id null.
func (r *relay) answerUnclassified(s *slot, err error) {
	s.errCode = CodeInvalid
	switch {
	case s.readErr != nil:
	case len(s.msgs) == 1 && !s.batch && s.msgs[0].Kind == Request:
		s.errID = s.msgs[0].ID
	case !errors.Is(err, ErrNotJSONRPC) && s.msgs == nil:
		s.errCode = CodeParse
	}
}

// dispatch forwards, holds or refuses a decided line.
func (r *relay) dispatch(s *slot) {
	ds := s.ruling.Decisions
	if len(s.actions) == 0 {
		// Unclassified: answered with a JSON-RPC error, never forwarded.
		reason := "tf refused this message"
		if len(ds) > 0 {
			reason = ds[0].Reason
		}
		// The outcome is queued before the client hears of it, so that it
		// is on record whenever tf stops after the answer.
		r.done(s.ruling.Done, Outcome{Refused: true})
		r.toClient(ErrorMessage(s.errID, s.errCode, reason, map[string]string{"rule": "", "reason": reason, "request_id": s.ruling.RequestID}))
		return
	}
	switch effectOf(ds) {
	case rules.Allow:
		r.forward(s)
	case rules.RequireApproval:
		if s.ruling.Hold == nil {
			r.refuse(s, ds)
			return
		}
		// A held line waits on its own; the lines after it go on.
		r.mu.Lock()
		r.holds++
		r.mu.Unlock()
		r.spawn(func() {
			defer func() {
				r.mu.Lock()
				r.holds--
				r.mu.Unlock()
				r.closeServerWhenIdle()
			}()
			final, cut := s.ruling.Hold(r.ctx)
			if effectOf(final) == rules.Allow {
				s.ruling.Cut = cut
				r.forward(s)
				return
			}
			r.refuse(s, final)
		})
	default:
		r.refuse(s, ds)
	}
}

func effectOf(ds []rules.Decision) rules.Effect {
	if len(ds) == 0 {
		return rules.Deny
	}
	return ds[strongest(ds)].Effect
}

func (r *relay) refuse(s *slot, ds []rules.Decision) {
	if len(ds) != len(s.msgs) {
		ds = make([]rules.Decision, len(s.msgs))
		for i := range ds {
			ds[i] = rules.Decision{Effect: rules.Deny, Reason: "tf could not decide this message"}
		}
	}
	k := strongest(ds)
	d := ds[k]
	ref := Refusal{Type: s.actions[k].Type, Rule: d.Rule, Reason: d.Reason, Effect: d.Effect, KillSwitch: d.KillSwitch, RequestID: s.ruling.RequestID}
	answers := AnswerAll(s.msgs, ds, ref, func(i int) string { return s.actions[i].Type })
	// Queued before the client hears of the refusal (see dispatch).
	r.done(s.ruling.Done, Outcome{Refused: true})
	if len(answers) > 0 {
		r.toClient(join(answers, s.batch))
	}
}

// forward sends an allowed line to the server and notes the requests
// whose answers are awaited.
func (r *relay) forward(s *slot) {
	p := &pendingLine{start: time.Now(), done: s.ruling.Done, bytes: len(s.line), slot: s, cut: s.ruling.Cut}
	var keys []string
	r.mu.Lock()
	if cut := p.cut; cut != nil && !r.watched[cut] {
		r.watched[cut] = true
		context.AfterFunc(cut, func() { r.cutPending(cut) })
	}
	if !r.closed {
		for i := range s.msgs {
			m := &s.msgs[i]
			if m.Kind != Request {
				continue
			}
			k := idKey(m.ID)
			r.pending[k] = p
			keys = append(keys, k)
			p.left++
			if kind, ok := listMethods[m.Method]; ok {
				r.lists[k] = kind
			}
			if c, ok := callOf(m); ok {
				if p.calls == nil {
					p.calls = map[string]Call{}
				}
				p.calls[k] = c
			}
		}
	}
	awaited := p.left // p.left belongs to fromServer once the line is sent
	r.mu.Unlock()

	r.serverMu.Lock()
	_, err := r.ServerIn.Write(append(bytes.TrimRight(s.line, "\r\n"), '\n'))
	r.serverMu.Unlock()
	if err != nil {
		err = fmt.Errorf("writing to the server: %w", err)
	}
	if err != nil || awaited == 0 {
		r.mu.Lock()
		for _, k := range keys {
			if r.pending[k] == p {
				delete(r.pending, k)
				delete(r.lists, k)
			}
		}
		r.mu.Unlock()
		r.done(p.done, Outcome{Err: err, Duration: time.Since(p.start), Bytes: p.bytes})
		return
	}
}

// cutPending cuts off every pending line of cut, which just ended.
func (r *relay) cutPending(cut context.Context) {
	var lines []*slot
	seen := map[*pendingLine]bool{}
	r.mu.Lock()
	delete(r.watched, cut)
	for _, p := range r.pending {
		if p.cut == cut && !seen[p] {
			seen[p] = true
			lines = append(lines, p.slot)
		}
	}
	r.mu.Unlock()
	for _, s := range lines {
		r.cutOff(s, context.Cause(cut))
	}
}

// cutOff answers the requests of a line still unanswered when the kill
// switch stopped the server's traffic; their late answers are dropped.
func (r *relay) cutOff(s *slot, cause error) {
	reason := "the kill switch cut this request off"
	if cause != nil {
		reason += ": " + cause.Error()
	}
	var answers [][]byte
	var p *pendingLine
	r.mu.Lock()
	for i := range s.msgs {
		m := &s.msgs[i]
		if m.Kind != Request {
			continue
		}
		k := idKey(m.ID)
		if q := r.pending[k]; q != nil {
			p = q
			delete(r.pending, k)
			delete(r.lists, k)
			q.left--
			answers = append(answers, Answer(m, Refusal{Type: MethodType(r.Server, m.Method), Reason: reason, Effect: rules.Deny, KillSwitch: true, RequestID: s.ruling.RequestID}))
		}
	}
	r.mu.Unlock()
	if len(answers) == 0 {
		return
	}
	for _, a := range answers {
		r.toClient(a)
	}
	if p != nil && p.left == 0 {
		r.done(p.done, Outcome{Err: errors.New(reason), Duration: time.Since(p.start), Bytes: p.bytes})
	}
}

// fromServer passes the server's lines to the client, filtering tool
// lists and noting answers, until the server's output ends.
func (r *relay) fromServer() error {
	br := bufio.NewReaderSize(r.ServerOut, 64<<10)
	for {
		// The server's lines are not bounded by MaxMessage: they carry
		// results (images, files) the client asked for.
		line, err := readLine(br, 0)
		if len(bytes.TrimSpace(line)) > 0 {
			if out, ok := r.fromServerLine(line); ok {
				r.toClient(out)
			}
		}
		if err != nil {
			r.mu.Lock()
			r.closed = true
			r.mu.Unlock()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading from the server: %w", err)
		}
	}
}

// fromServerLine handles one line from the server; ok false drops it (the
// answer to a request the kill switch cut off).
func (r *relay) fromServerLine(line []byte) ([]byte, bool) {
	line = bytes.TrimRight(line, "\r\n")
	msgs, batch, err := Parse(line)
	if err != nil {
		// The server's own output is not governed; the client judges it.
		return line, true
	}
	for i := range msgs {
		if msgs[i].Kind == Request {
			return r.serverRequests(line, msgs, batch)
		}
	}
	var lists map[string]ListKind
	var calls map[string]Call
	var inspect Inspector
	if ri, ok := r.Governor.(ResultInspector); ok {
		inspect = ri.InspectResults()
	}
	answered, dropped := 0, 0
	var finished []*pendingLine
	r.mu.Lock()
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != Response {
			continue
		}
		answered++
		k := idKey(m.ID)
		p := r.pending[k]
		if p == nil {
			dropped++
			continue
		}
		delete(r.pending, k)
		if kind, ok := r.lists[k]; ok {
			delete(r.lists, k)
			if lists == nil {
				lists = map[string]ListKind{}
			}
			lists[k] = kind
		}
		if m.Error != nil && p.errText == "" {
			p.errText = string(m.Error)
		}
		if c, ok := p.calls[k]; ok && inspect != nil {
			if calls == nil {
				calls = map[string]Call{}
			}
			calls[k] = c
		}
		if m.Result != nil && p.calls[k].Method == "tools/call" {
			e, _ := resultIsError(m.Result) // absent is false
			if p.isError == nil || e {
				p.isError = &e
			}
		}
		if p.left--; p.left == 0 {
			finished = append(finished, p)
		}
	}
	r.mu.Unlock()
	for _, p := range finished {
		o := Outcome{Duration: time.Since(p.start), Bytes: p.bytes, IsError: p.isError}
		if p.errText != "" {
			o.Err = fmt.Errorf("the server answered with an error: %s", truncate(p.errText, 512))
		}
		r.done(p.done, o)
	}
	if answered > 0 && dropped == answered && len(msgs) == answered {
		// Every message answers something tf did not send or already
		// answered itself (a request cut off by the kill switch).
		return nil, false
	}
	if lists != nil || calls != nil {
		var pin Pinner
		if p, ok := r.Governor.(ToolPinner); ok && lists != nil {
			pin = p.PinTools()
		}
		if hide := r.Governor.HideItems(); hide != nil || pin != nil || calls != nil {
			out, err := (&listFilter{ids: lists, hide: hide, pin: pin, calls: calls, inspect: inspect}).filterMessages(line)
			if err != nil {
				return ErrorMessage(nil, CodeRefused, "tf could not filter this list: "+err.Error(), nil), true
			}
			return out, true
		}
	}
	return line, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (r *relay) toClient(b []byte) {
	r.clientMu.Lock()
	defer r.clientMu.Unlock()
	// A client that went away is noticed on its input side.
	_, _ = r.ClientOut.Write(append(b[:len(b):len(b)], '\n'))
}

// done records an outcome. Governors record outcomes without waiting for
// them to be durable (nothing waits on an outcome), so it runs inline.
func (r *relay) done(f func(Outcome), o Outcome) {
	if f != nil {
		f(o)
	}
}

// finish records the lines still awaiting answers when the relay ends.
func (r *relay) finish(err error) {
	r.mu.Lock()
	seen := map[*pendingLine]bool{}
	var left []*pendingLine
	for k, p := range r.pending {
		delete(r.pending, k)
		if !seen[p] {
			seen[p] = true
			left = append(left, p)
		}
	}
	r.mu.Unlock()
	for _, p := range left {
		if p.done != nil {
			p.done(Outcome{Err: err, Duration: time.Since(p.start), Bytes: p.bytes})
		}
	}
}

var errLineTooLong = errors.New("line too long")

// maxHead is how much of a line too long to read tf keeps, to find the
// id of the request it refuses.
const maxHead = 64 << 10

// readLine reads one line (its newline included when present). A line
// longer than limit (when limit > 0) is consumed up to its end and reported
// with errLineTooLong.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if limit > 0 && len(line)+len(frag) > limit {
			// Skip to the end of the line, keeping only its start: the id
			// of the request it is, for the refusal.
			head := append(line, frag[:min(len(frag), max(0, maxHead-len(line)))]...)
			head = head[:min(len(head), maxHead)]
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return head, errLineTooLong
		}
		line = append(line, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

// serverRequests governs a line from the server that holds requests to
// the client (sampling, elicitation, roots): each is decided as
// ServerRequestAction. Allowed, the line goes to the client; refused, the
// server is answered with JSON-RPC errors in the client's place and the
// client sees only the rest of the line (a batch's other messages). A
// request held for approval waits on its own.
func (r *relay) serverRequests(line []byte, msgs []Message, batch bool) ([]byte, bool) {
	var actions []rules.Action
	var err error
	for i := range msgs {
		if msgs[i].Kind != Request {
			continue
		}
		a, aerr := ServerRequestAction(r.Server, &msgs[i])
		if aerr != nil {
			err = aerr
			actions = nil
			break
		}
		actions = append(actions, a)
	}
	ruling := r.Governor.Decide(r.ctx, actions, err)
	settle := func(ds []rules.Decision) ([]byte, bool) {
		if err == nil && effectOf(ds) == rules.Allow {
			r.done(ruling.Done, Outcome{Bytes: len(line)})
			return line, true
		}
		reason := "tf refused this request of the server"
		ref := Refusal{Type: "mcp." + r.Server + ".@?", Reason: reason, Effect: rules.Deny, RequestID: ruling.RequestID}
		if len(ds) > 0 && len(actions) > 0 {
			k := strongest(ds)
			ref = Refusal{Type: actions[min(k, len(actions)-1)].Type, Rule: ds[k].Rule, Reason: ds[k].Reason, Effect: ds[k].Effect, KillSwitch: ds[k].KillSwitch, RequestID: ruling.RequestID}
		} else if len(ds) > 0 {
			ref.Reason = ds[0].Reason
		}
		var toServer, toClient [][]byte
		for i := range msgs {
			if msgs[i].Kind == Request {
				toServer = append(toServer, RefuseRequest(msgs[i].ID, ref))
				continue
			}
			toClient = append(toClient, encodeMessage(&msgs[i]))
		}
		r.serverMu.Lock()
		for _, b := range toServer {
			_, _ = r.ServerIn.Write(append(b, '\n'))
		}
		r.serverMu.Unlock()
		r.done(ruling.Done, Outcome{Refused: true})
		if len(toClient) == 0 {
			return nil, false
		}
		return join(toClient, batch), true
	}
	if ruling.Hold != nil && err == nil && effectOf(ruling.Decisions) == rules.RequireApproval {
		r.spawn(func() {
			final, _ := ruling.Hold(r.ctx)
			if out, ok := settle(final); ok {
				r.toClient(out)
			}
		})
		return nil, false
	}
	return settle(ruling.Decisions)
}

// encodeMessage writes m back as JSON.
func encodeMessage(m *Message) []byte {
	raw := func(b []byte) json.RawMessage {
		if b == nil {
			return nil
		}
		return json.RawMessage(b)
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id,omitempty"`
		Method  string          `json:"method,omitempty"`
		Params  json.RawMessage `json:"params,omitempty"`
		Result  json.RawMessage `json:"result,omitempty"`
		Error   json.RawMessage `json:"error,omitempty"`
	}{"2.0", raw(m.ID), m.Method, raw(m.Params), raw(m.Result), raw(m.Error)})
	return b
}
