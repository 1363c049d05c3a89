package main

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
)

// store is the replicated state machine of this example: a map from keys to
// values. Every server of the cluster holds its own store; exraft applies the
// same committed commands to each of them in the same order, so they all hold
// the same map.
//
// Commands and queries are plain text, one line each:
//
//	set <key> <value>   command: the value is the rest of the line
//	delete <key>        command
//	get <key>           query
//
// It is also an exraft.Snapshotter, so that a server does not keep every
// command it ever applied: it snapshots the map now and then and drops the
// log the snapshot covers, and a server that joins, or comes back blank, is
// sent the latest snapshot instead of the whole log.
//
// exraft calls Apply, Query, Validate, Snapshot and Restore from one
// goroutine at a time, so the store needs no lock; the one thing that runs
// beside them, a snapshot's WriteTo, reads a copy of the map.
type store struct {
	data map[string]string
}

func newStore() *store {
	return &store{data: make(map[string]string)}
}

// Validate runs on the leader before a command enters the log. A malformed
// command is refused here, so the Write fails with exraft.ErrRejected and
// nothing is replicated.
func (s *store) Validate(command []byte) error {
	_, _, _, err := parseCommand(string(command))
	return err
}

// Apply runs on every server once the command is committed. Its result is
// what the leader's Write returns.
func (s *store) Apply(command []byte) []byte {
	op, key, value, err := parseCommand(string(command))
	if err != nil {
		// Validate keeps malformed commands out of the log; answer anyway.
		return []byte("error: " + err.Error())
	}
	switch op {
	case "set":
		s.data[key] = value
		return []byte("OK")
	default: // "delete"
		if _, ok := s.data[key]; !ok {
			return []byte("not found")
		}
		delete(s.data, key)
		return []byte("deleted")
	}
}

// Query answers "get <key>" with the value, or with nothing when the key is
// absent. It must not change the map.
func (s *store) Query(query []byte) []byte {
	op, key, ok := strings.Cut(strings.TrimSpace(string(query)), " ")
	if op != "get" || !ok || key == "" {
		return nil
	}
	value, found := s.data[key]
	if !found {
		return nil
	}
	return []byte(value)
}

// Snapshot copies the map, which is quick, and leaves encoding it to the
// WriterTo, which exraft runs while the next commands apply.
func (s *store) Snapshot() (io.WriterTo, error) {
	return storeImage(maps.Clone(s.data)), nil
}

// storeImage is the map as it was when Snapshot was called.
type storeImage map[string]string

// WriteTo encodes the map with gob rather than JSON: a value is any text a
// user typed, and JSON would replace bytes that are not UTF-8.
func (im storeImage) WriteTo(w io.Writer) (int64, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(map[string]string(im)); err != nil {
		return 0, err
	}
	return buf.WriteTo(w)
}

// Restore replaces the whole map with the one a snapshot holds. It decodes
// into a new map, so a snapshot that fails to decode leaves the old one.
func (s *store) Restore(r io.Reader) error {
	data := make(map[string]string)
	if err := gob.NewDecoder(r).Decode(&data); err != nil {
		return fmt.Errorf("decoding the snapshot: %w", err)
	}
	s.data = data
	return nil
}

// parseCommand splits a command line into its operation, key and value.
func parseCommand(line string) (op, key, value string, err error) {
	fields := strings.SplitN(strings.TrimSpace(line), " ", 3)
	switch fields[0] {
	case "set":
		if len(fields) != 3 || fields[1] == "" {
			return "", "", "", errors.New("usage: set <key> <value>")
		}
		return "set", fields[1], fields[2], nil
	case "delete":
		if len(fields) != 2 || fields[1] == "" {
			return "", "", "", errors.New("usage: delete <key>")
		}
		return "delete", fields[1], "", nil
	}
	return "", "", "", fmt.Errorf("unknown command %q (want set or delete)", fields[0])
}
