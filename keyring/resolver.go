package keyring

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tameflare/tf/keyring/injection"
)

// DefaultTTL bounds how long the Resolver trusts a value read from an OS
// keyring before reading it again. File-backend values are checked against
// the file on every Get instead, which is cheaper than a D-Bus round trip.
const DefaultTTL = 2 * time.Second

// ResolverOptions configure a Resolver. The zero value is ready to use.
type ResolverOptions struct {
	// TTL of cached OS-keyring values; 0 means DefaultTTL, negative means
	// no caching.
	TTL time.Duration
	// LookupEnv reads tf's own environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// A Resolver gives the gateway the current value of a secret. TF_SECRET_<NAME>
// in tf's environment wins over the keyring: it is the explicit, per-process
// choice (CI, a one-off override), the keyring the ambient default. Values
// are re-read as they change, so `tf creds set` takes effect on the next
// request. Every value it hands out joins its Redactor. Safe for concurrent
// use.
type Resolver struct {
	store     *Store // nil: the environment only
	ttl       time.Duration
	lookupEnv func(string) (string, bool)
	now       func() time.Time
	redactor  *Redactor

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	value string
	at    time.Time
	fi    os.FileInfo // file backend: the file the value came from
}

// NewResolver returns a Resolver over store, which may be nil when secrets
// come from the environment only.
func NewResolver(store *Store, opts ResolverOptions) *Resolver {
	r := &Resolver{
		store:     store,
		ttl:       opts.TTL,
		lookupEnv: opts.LookupEnv,
		now:       opts.Now,
		redactor:  NewRedactor(),
		cache:     map[string]cached{},
	}
	if r.ttl == 0 {
		r.ttl = DefaultTTL
	}
	if r.lookupEnv == nil {
		r.lookupEnv = os.LookupEnv
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Redactor returns the redactor that knows every value this Resolver has
// handed out, old values included: a rotated secret is still a secret.
func (r *Resolver) Redactor() *Redactor { return r.redactor }

// Resolve checks that every name has a value, as a gateway does at start.
// The error names every missing secret (never a value).
func (r *Resolver) Resolve(names ...string) error {
	var missing []string
	var errs []error
	for _, n := range names {
		_, err := r.Get(n)
		switch {
		case err == nil:
		case errors.Is(err, ErrNotFound):
			missing = append(missing, n)
		default:
			errs = append(errs, err)
		}
	}
	if len(missing) > 0 {
		hint := "set them with `tf creds set NAME` or " + EnvSecretPfx + "<NAME>"
		errs = append([]error{fmt.Errorf("%w: %s (%s)", ErrNotFound, strings.Join(missing, ", "), hint)}, errs...)
	}
	return errors.Join(errs...)
}

// Get returns the current value of name.
func (r *Resolver) Get(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if v, ok := r.lookupEnv(EnvName(name)); ok && v != "" {
		if err := injection.ValidSecretValue(v); err != nil {
			return "", fmt.Errorf("keyring: %s: %w", EnvName(name), err)
		}
		r.redactor.Add(v)
		return v, nil
	}
	if r.store == nil {
		return "", fmt.Errorf("%w: %q (no keyring; set %s)", ErrNotFound, name, EnvName(name))
	}
	if v, ok := r.fresh(name); ok {
		return v, nil
	}
	// Stat before reading: if the file changes in between, the next Get
	// sees a newer file and reads again, never the reverse.
	var fi os.FileInfo
	if r.store.file != nil {
		var err error
		if fi, err = r.store.file.stat(name); err != nil {
			r.forget(name)
			if errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("%w: %q in %s", ErrNotFound, name, r.store.Location())
			}
			return "", fmt.Errorf("keyring: reading %q: %w", name, err)
		}
	}
	v, err := r.store.Get(name)
	if err != nil {
		r.forget(name)
		return "", err
	}
	r.redactor.Add(v)
	r.mu.Lock()
	r.cache[name] = cached{value: v, at: r.now(), fi: fi}
	r.mu.Unlock()
	return v, nil
}

// fresh returns the cached value while it is still current: for the file
// backend while the file is the same file, unmodified; otherwise within
// the TTL.
func (r *Resolver) fresh(name string) (string, bool) {
	r.mu.Lock()
	c, ok := r.cache[name]
	r.mu.Unlock()
	if !ok {
		return "", false
	}
	if c.fi != nil {
		fi, err := r.store.file.stat(name)
		if err != nil || !os.SameFile(fi, c.fi) || !fi.ModTime().Equal(c.fi.ModTime()) || fi.Size() != c.fi.Size() {
			return "", false
		}
		return c.value, true
	}
	if r.ttl < 0 || r.now().Sub(c.at) >= r.ttl {
		return "", false
	}
	return c.value, true
}

func (r *Resolver) forget(name string) {
	r.mu.Lock()
	delete(r.cache, name)
	r.mu.Unlock()
}
