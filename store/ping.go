package store

import (
	"context"
	"fmt"
)

// unavailable reports that Redis did not answer; it names its component for readiness reports.
type unavailable struct{ err error }

func (e *unavailable) Error() string     { return fmt.Sprintf("redis unavailable: %v", e.err) }
func (e *unavailable) Unwrap() error     { return e.err }
func (e *unavailable) Component() string { return "redis" }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return &unavailable{err: err}
	}
	return nil
}
