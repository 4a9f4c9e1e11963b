package keyring

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
)

const echoed = "ghp_EchoedSecretValue0123456789abcdef"

func TestGuardCutsEveryForm(t *testing.T) {
	r := NewRedactor(echoed)
	for name, form := range map[string]string{
		"plain":     echoed,
		"base64":    base64.StdEncoding.EncodeToString([]byte(echoed)),
		"git basic": base64.StdEncoding.EncodeToString([]byte("x-access-token:" + echoed)),
	} {
		for _, oneByte := range []bool{false, true} {
			body := strings.Repeat("a", 70000) + `{"token":"` + form + `"}` + strings.Repeat("b", 100)
			var src io.Reader = strings.NewReader(body)
			if oneByte {
				src = iotest.OneByteReader(src) // the form arrives split across reads
			}
			found := 0
			g := r.Guard(io.NopCloser(src), func() { found++ })
			got, err := io.ReadAll(g)
			if !errors.Is(err, ErrSecretInResponse) || found != 1 {
				t.Errorf("%s (one byte %v): err %v, found %d", name, oneByte, err, found)
			}
			if bytes.Contains(got, []byte(form)) || bytes.Contains(got, []byte(form[:len(form)/2]+form[len(form)/2:])) {
				t.Errorf("%s: the secret reached the reader", name)
			}
			if len(got) > 70000+len(`{"token":"`) {
				t.Errorf("%s: %d bytes passed, more than came before the secret", name, len(got))
			}
		}
	}
}

func TestGuardCutsURLEncodedSecret(t *testing.T) {
	secret := "s3cr3t/with+chars=="
	r := NewRedactor(secret)
	form := url.QueryEscape(secret)
	_, err := io.ReadAll(r.Guard(io.NopCloser(strings.NewReader("next="+form)), nil))
	if !errors.Is(err, ErrSecretInResponse) {
		t.Fatalf("URL-encoded secret %q: %v", form, err)
	}
}

func TestGuardPassesCleanStreams(t *testing.T) {
	r := NewRedactor(echoed)
	body := strings.Repeat("0123456789", 20000) + echoed[:len(echoed)-1] // a near miss at the very end
	got, err := io.ReadAll(r.Guard(io.NopCloser(iotest.HalfReader(strings.NewReader(body))), nil))
	if err != nil || string(got) != body {
		t.Fatalf("clean stream: err %v, %d bytes of %d", err, len(got), len(body))
	}
	if g := NewRedactor().Guard(io.NopCloser(strings.NewReader("x")), nil); g == nil {
		t.Fatal("nil guard")
	}
}

func TestRedactHeaderAndBytes(t *testing.T) {
	r := NewRedactor(echoed)
	h := http.Header{"X-Debug-Auth": {"Bearer " + echoed}, "Location": {"https://x.example/?t=" + url.QueryEscape(echoed)}, "Etag": {"abc"}}
	if n := r.RedactHeader(h); n != 2 {
		t.Errorf("changed %d values, want 2", n)
	}
	if h.Get("X-Debug-Auth") != "Bearer "+Redacted || strings.Contains(h.Get("Location"), echoed) || h.Get("Etag") != "abc" {
		t.Errorf("headers %v", h)
	}
	b, changed := r.RedactBytes([]byte(`{"auth":"` + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+echoed)) + `"}`))
	if !changed || string(b) != `{"auth":"`+Redacted+`"}` {
		t.Errorf("RedactBytes = %s, %v", b, changed)
	}
	if b, changed := r.RedactBytes([]byte("clean")); changed || string(b) != "clean" {
		t.Errorf("clean body changed: %s", b)
	}
}

// An event is released at once unless its end could begin a secret.
func TestGuardDoesNotHoldEvents(t *testing.T) {
	r := NewRedactor(echoed)
	pr, pw := io.Pipe()
	g := r.Guard(pr, nil)
	go io.WriteString(pw, "data: first\n\n")
	buf := make([]byte, 100)
	n, err := g.Read(buf)
	if err != nil || string(buf[:n]) != "data: first\n\n" {
		t.Fatalf("first event: %q, %v", buf[:n], err)
	}
	// A tail that begins the secret waits; the rest of it is withheld.
	go io.WriteString(pw, "data: "+echoed[:5])
	n, _ = g.Read(buf)
	if string(buf[:n]) != "data: " {
		t.Fatalf("released %q, want only what cannot begin the secret", buf[:n])
	}
	go func() { io.WriteString(pw, echoed[5:]); pw.Close() }()
	if _, err := io.ReadAll(g); !errors.Is(err, ErrSecretInResponse) {
		t.Fatalf("err %v", err)
	}
}
