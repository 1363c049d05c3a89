package exraft

import (
	"errors"
	"strings"
	"testing"

	"github.com/exraft/exraft/internal/wire"
)

// TestWireErrorsBecomePublic: internal/wire's errors are its own, but what a
// user sees of them matches the public ones. The frame limit's error no
// longer wraps ErrTooLarge (wire cannot import the root); its text still
// begins with ErrTooLarge's, and the root maps the error response a server
// sends for a reply that did not fit, which begins with that text too.
func TestWireErrorsBecomePublic(t *testing.T) {
	if !strings.HasPrefix(wire.ErrFrameTooLarge.Error(), ErrTooLarge.Error()+": ") {
		t.Fatalf("wire.ErrFrameTooLarge is %q; its text must begin with ErrTooLarge's, %q", wire.ErrFrameTooLarge, ErrTooLarge)
	}
	text := wire.ErrFrameTooLarge.Error() + ": the reply to Read exceeds 4096 bytes (the server's MaxFrameSize)"
	err := serverError(text)
	if !errors.Is(err, ErrTooLarge) || err.Error() != text {
		t.Fatalf("a server's reply too large for a frame became %T %q; want ErrTooLarge with the server's text", err, err)
	}
	var remote *RemoteError
	if err := serverError("rpc: can't find method Exraft.Nope"); !errors.As(err, &remote) || remote.Msg != "rpc: can't find method Exraft.Nope" {
		t.Fatalf("any other error response became %T %q; want a *RemoteError with its text", err, err)
	}
}
