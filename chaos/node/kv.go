package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// kv is the state machine the chaos suite checks: a register per key that
// remembers every value it ever held, in the order applied. The history,
// not just the value, is what lets the suite tell a write applied twice, or
// an acknowledged write lost, from the final state alone.
//
// Commands and queries are text:
//
//	put <key> <value>   command: returns the value it replaced ("" for none)
//	get <key>           query: the current value
//	dump                query: every key's history, as JSON
type kv struct {
	hist map[string][]string
}

func newKV() *kv { return &kv{hist: map[string][]string{}} }

// Validate keeps malformed commands out of the log.
func (s *kv) Validate(cmd []byte) error {
	_, _, err := parsePut(cmd)
	return err
}

// Apply appends the value to the key's history and returns the one it
// replaced: that pins down where in the order the write took effect.
func (s *kv) Apply(cmd []byte) []byte {
	key, val, err := parsePut(cmd)
	if err != nil {
		return []byte("error: " + err.Error())
	}
	prev := s.current(key)
	s.hist[key] = append(s.hist[key], val)
	return []byte(prev)
}

// Query answers get and dump; anything else gets nil.
func (s *kv) Query(q []byte) []byte {
	text := string(q)
	if text == "dump" {
		b, _ := json.Marshal(s.hist) // map keys come out sorted: same state, same bytes
		return b
	}
	if key, ok := strings.CutPrefix(text, "get "); ok {
		return []byte(s.current(key))
	}
	return nil
}

func (s *kv) current(key string) string {
	h := s.hist[key]
	if len(h) == 0 {
		return ""
	}
	return h[len(h)-1]
}

// Snapshot copies the histories (the slices only grow, so a shallow copy
// of each is a stable view) for the WriterTo to encode off the apply path.
func (s *kv) Snapshot() (io.WriterTo, error) {
	img := make(map[string][]string, len(s.hist))
	for k, h := range s.hist {
		img[k] = h[:len(h):len(h)]
	}
	return image(img), nil
}

type image map[string][]string

func (im image) WriteTo(w io.Writer) (int64, error) {
	b, err := json.Marshal(map[string][]string(im))
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// Restore replaces the whole state; a snapshot that does not decode leaves
// the old one.
func (s *kv) Restore(r io.Reader) error {
	hist := map[string][]string{}
	if err := json.NewDecoder(r).Decode(&hist); err != nil {
		return fmt.Errorf("decoding the snapshot: %w", err)
	}
	s.hist = hist
	return nil
}

func parsePut(cmd []byte) (key, val string, err error) {
	f := strings.Fields(string(cmd))
	if len(f) != 3 || f[0] != "put" {
		return "", "", fmt.Errorf("want put <key> <value>, got %q", cmd)
	}
	return f[1], f[2], nil
}
