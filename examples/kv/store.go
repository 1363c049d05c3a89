package main

import (
	"errors"
	"fmt"
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
// exraft calls Apply, Query and Validate from one goroutine at a time, so the
// store needs no lock.
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
