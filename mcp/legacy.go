package mcp

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of what tf keeps for the sessions of the legacy HTTP+SSE
// transport, whose answers arrive on the session's GET stream rather than
// in the response to the POST that asked: the agent chooses how many
// requests it leaves unanswered, so every table is bounded.
const (
	// MaxLegacySessions bounds the open sessions a gateway follows.
	MaxLegacySessions = 4096
	// MaxAwaitedPerSession bounds the requests of one session awaiting
	// their answers on its stream; MaxAwaited those of all sessions.
	MaxAwaitedPerSession = 1024
	MaxAwaited           = 16384
	// DefaultAnswerTimeout is how long a request waits for its answer on
	// the stream before its outcome is recorded without one.
	DefaultAnswerTimeout = 10 * time.Minute
)

// Bounds of the parameter names kept per endpoint: an endpoint with more
// query parameters, or a path with more kinds of endpoints, is not
// followed.
const (
	maxEndpointParams = 8
	maxNameLists      = 16
)

// Why a request got no answer on the stream, as outcome records say it.
const (
	NoAnswerStreamEnded = "no answer on the SSE stream: the stream ended first"
	NoAnswerTimeout     = "no answer on the SSE stream within "
	NoAnswerStopped     = "no answer on the SSE stream: the gateway stopped first"
)

// Errors of Await and Lookup: the POST is refused (it is not forwarded),
// since tf could not tell its answers from another request's.
var (
	ErrDuplicateID   = errors.New("a request with this JSON-RPC id already awaits its answer in this session (ids must be unique among requests in flight)")
	ErrTooManyAwait  = fmt.Errorf("too many requests await their answers on this session's SSE stream (at most %d per session, %d in all)", MaxAwaitedPerSession, MaxAwaited)
	ErrAmbiguousPost = errors.New("the endpoint's session parameters are given more than once, so tf cannot tell which session this post belongs to")
)

// LegacySessions are the open sessions of the legacy transport, found by
// the endpoint their clients post to. A session lives while one of its
// GET streams is open; its table of awaited requests pairs each answer on
// a stream with the POST that asked, by JSON-RPC id.
type LegacySessions struct {
	// Timeout bounds the wait for an answer (DefaultAnswerTimeout when 0).
	Timeout time.Duration

	mu sync.Mutex
	// names holds, by origin and path, the lists of query parameter
	// names that endpoints announced there carry (usually one:
	// sessionId).
	names    map[string][][]string
	sessions map[string]*LegacySession
	awaited  atomic.Int64
}

// A LegacySession is one session of the legacy transport.
type LegacySession struct {
	set *LegacySessions
	key string

	mu sync.Mutex
	// streams are the open GET streams announcing this endpoint (the
	// latest last): tf's own events go to the latest.
	streams []chan<- []byte
	awaited map[string]*awaitedReq
	closed  bool
}

type awaitedReq struct {
	call Call
	w    *Wait
}

// endpointKey returns u's origin (host without case or default port)
// and path (normalised as servers route), its query and the query's
// parameter names, sorted.
func endpointKey(u *url.URL) (origin, path string, q url.Values, names []string, err error) {
	host := stripDefaultPort(u.Scheme, strings.TrimSuffix(strings.ToLower(u.Host), "."))
	origin = u.Scheme + "://" + host
	q, err = url.ParseQuery(u.RawQuery)
	for k := range q {
		names = append(names, k)
	}
	slices.Sort(names)
	return origin, normalPath(u.Path), q, names, err
}

// sessionKey is the key of the session with the given parameters: the
// origin and the parameters' values when there are any (a post with them
// belongs to the session whatever path it names, so that no spelling of
// the path a server accepts escapes it), else the origin and path. ok is
// false when q lacks one of names, err set when it gives one twice.
func sessionKey(origin, path string, q url.Values, names []string) (key string, ok bool, err error) {
	var b strings.Builder
	b.WriteString(origin)
	if len(names) == 0 {
		b.WriteString(path)
	}
	b.WriteByte('?')
	for _, n := range names {
		vs := q[n]
		switch {
		case len(vs) == 0:
			return "", false, nil
		case len(vs) > 1:
			return "", false, ErrAmbiguousPost
		}
		b.WriteString(url.QueryEscape(n))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(vs[0]))
		b.WriteByte('&')
	}
	return b.String(), true, nil
}

// Open registers a GET stream that announced endpoint; inject carries
// tf's own events into it. ok is false when the gateway follows too many
// sessions already: the posts to this endpoint are then governed as
// ordinary HTTP ones.
func (s *LegacySessions) Open(endpoint *url.URL, inject chan<- []byte) (*LegacySession, bool) {
	origin, path, q, names, err := endpointKey(endpoint)
	if err != nil || len(names) > maxEndpointParams {
		return nil, false
	}
	key, _, err := sessionKey(origin, path, q, names)
	if err != nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.sessions[key]
	if ls == nil {
		known := slices.ContainsFunc(s.names[origin], func(n []string) bool { return slices.Equal(n, names) })
		if len(s.sessions) >= MaxLegacySessions || (!known && (len(s.names[origin]) >= maxNameLists || len(s.names) >= MaxLegacySessions)) {
			return nil, false
		}
		if s.sessions == nil {
			s.sessions, s.names = map[string]*LegacySession{}, map[string][][]string{}
		}
		ls = &LegacySession{set: s, key: key, awaited: map[string]*awaitedReq{}}
		s.sessions[key] = ls
		if !known {
			s.names[origin] = append(s.names[origin], names)
		}
	}
	ls.mu.Lock()
	ls.streams = append(ls.streams, inject)
	ls.mu.Unlock()
	return ls, true
}

// Lookup returns the open session that a POST to u belongs to, nil when
// none. An endpoint announced with query parameters (sessionId=...)
// takes every post to its origin whose query gives each of them once
// with the announced value, in any order or spelling, other parameters
// allowed, whatever the path; one without takes the posts to its path
// (as servers route: case, dot segments, repeated slashes). A post that
// names a parameter twice, that matches two sessions, or whose query tf
// cannot read (a ';'), to an origin where sessions are open, is an
// error: a server might route it to any of them.
func (s *LegacySessions) Lookup(u *url.URL) (*LegacySession, error) {
	origin, path, q, _, qerr := endpointKey(u)
	s.mu.Lock()
	defer s.mu.Unlock()
	lists := s.names[origin]
	if len(lists) == 0 {
		return nil, nil
	}
	if qerr != nil {
		return nil, ErrAmbiguousPost
	}
	var found *LegacySession
	for _, names := range lists {
		key, ok, err := sessionKey(origin, path, q, names)
		if err != nil {
			return nil, err
		}
		ls := s.sessions[key]
		if !ok || ls == nil || ls == found {
			continue
		}
		if found != nil {
			return nil, ErrAmbiguousPost
		}
		found = ls
	}
	return found, nil
}

// CloseAll ends every session (the gateway stops): their waits are
// finished without answers.
func (s *LegacySessions) CloseAll() {
	s.mu.Lock()
	all := make([]*LegacySession, 0, len(s.sessions))
	for _, ls := range s.sessions {
		all = append(all, ls)
	}
	s.mu.Unlock()
	for _, ls := range all {
		ls.end(NoAnswerStopped)
	}
}

// Inject returns where tf's own events for the session go: its latest
// open stream.
func (ls *LegacySession) Inject() (chan<- []byte, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.streams) == 0 {
		return nil, false
	}
	return ls.streams[len(ls.streams)-1], true
}

// CloseStream unregisters the stream of inject; when it was the
// session's last, the session ends and every request still awaiting its
// answer is finished without one.
func (ls *LegacySession) CloseStream(inject chan<- []byte) {
	ls.mu.Lock()
	if i := slices.Index(ls.streams, inject); i >= 0 {
		ls.streams = slices.Delete(ls.streams, i, i+1)
	}
	last := len(ls.streams) == 0
	ls.mu.Unlock()
	if last {
		ls.end(NoAnswerStreamEnded)
	}
}

func (ls *LegacySession) end(reason string) {
	s := ls.set
	s.mu.Lock()
	if s.sessions[ls.key] == ls {
		delete(s.sessions, ls.key)
	}
	s.mu.Unlock()
	ls.mu.Lock()
	ls.closed = true
	waits := map[*Wait]bool{}
	for _, a := range ls.awaited {
		waits[a.w] = true
	}
	n := len(ls.awaited)
	clear(ls.awaited)
	ls.mu.Unlock()
	s.awaited.Add(-int64(n))
	for w := range waits {
		w.Finish(reason)
	}
}

// Answered is what a POST's requests got on the stream.
type Answered struct {
	// IsError is the isError of the tool results: true when one was;
	// nil when no tool result came.
	IsError *bool
	// Error is the first JSON-RPC error answered (as JSON, cut to 512
	// bytes).
	Error string
	// NoAnswer says why some request got no answer on the stream.
	NoAnswer string
	// Took is the time from Await to the last answer.
	Took time.Duration
}

// A Wait is one POST's requests awaiting their answers on the stream.
type Wait struct {
	ls    *LegacySession
	start time.Time
	done  func(Answered)
	timer *time.Timer

	mu       sync.Mutex
	keys     []string // of the requests still awaited
	ans      Answered
	finished bool
}

// Await enters the requests of one POST, by their JSON-RPC ids (as
// JSON) and calls, in the session's table before the POST is forwarded,
// so that no answer can come before it; done is called once, when every
// request is answered, or with Answered.NoAnswer when the stream ends or
// the session's Timeout passes first (see Start). It fails, entering nothing, on an
// id that a request of the session in flight has (or that the POST
// holds twice), and when the tables are full.
func (ls *LegacySession) Await(ids []string, calls []Call, done func(Answered)) (*Wait, error) {
	w := &Wait{ls: ls, start: time.Now(), done: done}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = idKey([]byte(id))
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return nil, errors.New("the session's SSE stream has ended")
	}
	for i, k := range keys {
		if ls.awaited[k] != nil || slices.Index(keys, k) != i {
			return nil, fmt.Errorf("%w: %s", ErrDuplicateID, truncate(ids[i], 64))
		}
	}
	if len(ls.awaited)+len(keys) > MaxAwaitedPerSession {
		return nil, ErrTooManyAwait
	}
	if ls.set.awaited.Add(int64(len(keys))) > MaxAwaited {
		ls.set.awaited.Add(-int64(len(keys)))
		return nil, ErrTooManyAwait
	}
	for i, k := range keys {
		ls.awaited[k] = &awaitedReq{call: calls[i], w: w}
	}
	w.mu.Lock()
	w.keys = keys
	w.mu.Unlock()
	return w, nil
}

// Start starts the wait's clock, once its POST is accepted: when the
// session's Timeout passes before every answer came, done hears so. The
// requests stay in the table until their answers come or the stream ends,
// so that a late answer is never taken for another request's that reuses
// the id.
func (w *Wait) Start() {
	timeout := w.ls.set.Timeout
	if timeout <= 0 {
		timeout = DefaultAnswerTimeout
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished || w.timer != nil {
		return
	}
	w.timer = time.AfterFunc(timeout, func() { w.finish(NoAnswerTimeout+timeout.String(), false) })
}

// Answer takes the answer to id off the table, the stream reader's part:
// hasResult and isError are the answer's result and its isError, rpcErr
// its error member. It returns the call that asked, false when no request
// of the session awaits id (the answer is then only passed on).
func (ls *LegacySession) Answer(id []byte, hasResult, isError bool, rpcErr []byte) (Call, bool) {
	k := idKey(id)
	ls.mu.Lock()
	a := ls.awaited[k]
	if a != nil {
		delete(ls.awaited, k)
		ls.set.awaited.Add(-1)
	}
	ls.mu.Unlock()
	if a == nil {
		return Call{}, false
	}
	a.w.answer(k, a.call, hasResult, isError, rpcErr)
	return a.call, true
}

func (w *Wait) answer(key string, call Call, hasResult, isError bool, rpcErr []byte) {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		return
	}
	w.keys = slices.DeleteFunc(w.keys, func(k string) bool { return k == key })
	if hasResult && call.Method == "tools/call" && (w.ans.IsError == nil || isError) {
		w.ans.IsError = &isError
	}
	if rpcErr != nil && w.ans.Error == "" {
		w.ans.Error = truncate(string(rpcErr), 512)
	}
	last := len(w.keys) == 0
	w.mu.Unlock()
	if last {
		w.Finish("")
	}
}

// Finish ends the wait now: requests not yet answered leave the table,
// and done hears what came, with noAnswer when some request had no
// answer (empty when answers came elsewhere, in the POST's response).
// Later calls do nothing.
func (w *Wait) Finish(noAnswer string) { w.finish(noAnswer, true) }

// finish is Finish; release false leaves the requests not yet answered
// in the table (timed out).
func (w *Wait) finish(noAnswer string, release bool) {
	keys, ans, ok := w.end(noAnswer)
	if !ok {
		return
	}
	if release {
		w.release(keys)
	}
	if w.done != nil {
		w.done(ans)
	}
}

// Cancel takes the requests off the table without calling done: the
// POST was not forwarded.
func (w *Wait) Cancel() {
	if keys, _, ok := w.end(""); ok {
		w.release(keys)
	}
}

// end marks w finished and stops its timer, once: it returns the keys
// still awaited and the answer as it stands (noAnswer set when some
// requests went unanswered); ok is false if w had ended before.
func (w *Wait) end(noAnswer string) (keys []string, ans Answered, ok bool) {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		return nil, Answered{}, false
	}
	w.finished = true
	keys, t := w.keys, w.timer
	w.keys = nil
	if len(keys) > 0 {
		w.ans.NoAnswer = noAnswer
	}
	w.ans.Took = time.Since(w.start)
	ans = w.ans
	w.mu.Unlock()
	if t != nil {
		t.Stop()
	}
	return keys, ans, true
}

func (w *Wait) release(keys []string) {
	ls := w.ls
	ls.mu.Lock()
	for _, k := range keys {
		if a := ls.awaited[k]; a != nil && a.w == w {
			delete(ls.awaited, k)
			ls.set.awaited.Add(-1)
		}
	}
	ls.mu.Unlock()
}

// Awaiting returns how many requests await answers in all sessions.
func (s *LegacySessions) Awaiting() int { return int(s.awaited.Load()) }
