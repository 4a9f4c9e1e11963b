package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/gitops"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/termtext"
)

// startSyncTimeout bounds the fetch of the remote ref when a gateway
// starts; past it, the gateway starts with the last good pin.
const startSyncTimeout = 30 * time.Second

// configuredRemote reads pin: from $TF_HOME/config.yaml; nil when this
// home follows no remote ref.
func configuredRemote(dir string) (*gitops.RemotePin, time.Duration, error) {
	file, err := gateway.LoadConfigFile(gateway.ConfigPath(dir))
	if err != nil {
		return nil, 0, err
	}
	if file.Pin.Remote == "" {
		return nil, 0, nil
	}
	rp, err := remotePin(file.Pin)
	return rp, file.Pin.Interval, err
}

// remotePin turns a pin: section into a RemotePin, with the credential
// from the keyring: tf's own, never the agent's environment.
func remotePin(pc gateway.PinConfig) (*gitops.RemotePin, error) {
	rp := &gitops.RemotePin{Remote: pc.Remote, Ref: pc.Ref, RequireSigned: pc.RequireSigned}
	if err := rp.Validate(); err != nil {
		return nil, err
	}
	if pc.Credential != "" {
		// TF_SECRET_<NAME> in tf's own environment first (CI), as for the
		// policy's credentials, then the keyring.
		r := keyring.NewResolver(nil, keyring.ResolverOptions{})
		if r.Resolve(pc.Credential) != nil {
			store, err := keyring.Open(keyring.Options{})
			if err != nil {
				return nil, fmt.Errorf("pin: credential %s: %w", pc.Credential, err)
			}
			r = keyring.NewResolver(store, keyring.ResolverOptions{})
		}
		secret, err := r.Get(pc.Credential)
		if err != nil {
			return nil, fmt.Errorf("pin: credential %s: %w", pc.Credential, err)
		}
		// Git servers take a token as the password of any user name.
		rp.Auth = &githttp.BasicAuth{Username: "tf", Password: secret}
	}
	return rp, nil
}

// remoteFor is the remote tf policy apply and log work on: --remote and
// --ref, else pin: in config.yaml; nil for the local pin.
func remoteFor(c *cli.Context, dir string) (rp *gitops.RemotePin, following bool, err error) {
	cfg, _, err := configuredRemote(dir)
	if err != nil {
		return nil, false, err
	}
	if c.String("remote") == "" {
		if cfg != nil && c.String("ref") != "" {
			cfg.Ref = c.String("ref")
			return cfg, false, cfg.Validate()
		}
		if c.String("ref") != "" {
			return nil, false, errors.New("--ref names a ref of a remote: give --remote too, or pin: {remote} in config.yaml")
		}
		return cfg, cfg != nil, nil
	}
	pc := gateway.PinConfig{Remote: c.String("remote"), Ref: c.String("ref")}
	if cfg != nil && cfg.Remote == pc.Remote {
		pc.RequireSigned = cfg.RequireSigned
		rp, err := remotePin(pc)
		if err == nil {
			rp.Auth = cfg.Auth
		}
		return rp, err == nil && rp.RefName() == cfg.RefName(), err
	}
	rp, err = remotePin(pc)
	return rp, false, err
}

// syncAtStart makes the local pin follow the configured remote ref before
// a gateway loads it. When the remote cannot be reached or its tip fails
// its checks, the gateway starts with the last good pin, saying so; with
// no pin to fall back on it does not start.
func syncAtStart(w io.Writer, dir string) error {
	rp, _, err := configuredRemote(dir)
	if err != nil || rp == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startSyncTimeout)
	defer cancel()
	res, err := gitops.SyncRemote(ctx, dir, rp)
	if err != nil {
		pin, perr := gitops.ReadPin(dir)
		if perr != nil {
			return fmt.Errorf("following %s of %s: %w (and no policy is pinned here to fall back on)", rp.RefName(), rp.Remote, err)
		}
		fmt.Fprintf(w, "tf: could not follow %s of %s: %s\ntf: governing with the last good policy %s\n",
			rp.RefName(), rp.Remote, termtext.Safe(err.Error()), pin.Short())
		return nil
	}
	if res.Changed {
		fmt.Fprintf(w, "tf: %s of %s applies %s (by %s at %s)\n", rp.RefName(), rp.Remote,
			res.Pin.Short(), termtext.Safe(res.Pin.AppliedBy), res.Pin.AppliedAt.Format(time.RFC3339))
	}
	return nil
}

// followRemote keeps the local pin on the configured remote ref until ctx
// ends; the pin watcher of followPin reloads the gateway's policy.
func followRemote(ctx context.Context, w io.Writer, dir string) {
	rp, iv, err := configuredRemote(dir)
	if err != nil {
		fmt.Fprintf(w, "tf: not following the remote ref: %v\n", err)
		return
	}
	if rp == nil {
		return
	}
	f := &gitops.Follower{Home: dir, Remote: *rp, Interval: iv,
		OnError: func(err error) {
			fmt.Fprintf(w, "tf: following %s of %s: %s; the policy in force stays\n", rp.RefName(), rp.Remote, termtext.Safe(err.Error()))
		},
		OnRecover: func() {
			fmt.Fprintf(w, "tf: following %s of %s again\n", rp.RefName(), rp.Remote)
		},
	}
	go f.Run(ctx)
}
