package store

// RoundEvent is one queued append for AppendRound.
type RoundEvent struct {
	Review string
	Event  []byte
	Guard  *Access
}

// AppendRound sends events as one round of the audit batcher, in order, and returns each event's result: a test
// can thus put a known mix of reviews, guards and runs into one round.
func (s *Store) AppendRound(events []RoundEvent) []error {
	var order []string
	pending := map[string][]*auditItem{}
	items := make([]*auditItem, len(events))
	for i, e := range events {
		items[i] = &auditItem{event: e.Event, guard: e.Guard, done: make(chan error, 1)}
		if len(pending[e.Review]) == 0 {
			order = append(order, e.Review)
		}
		pending[e.Review] = append(pending[e.Review], items[i])
	}
	s.appendRound(order, pending)
	errs := make([]error, len(events))
	for i, it := range items {
		errs[i] = <-it.done
	}
	return errs
}

// SetOwedPage makes PayOwedJobs read debts n at a time until the test ends.
func SetOwedPage(t interface{ Cleanup(func()) }, n int) {
	old := owedPage
	owedPage = n
	t.Cleanup(func() { owedPage = old })
}

// QueuedAsks is how many asks for a rate lease were made for requests queued behind an empty lease.
func (s *Store) QueuedAsks() int64 {
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	return s.leases.queued
}

// Held is how many leased events this replica holds unspent for the bucket key.
func (s *Store) Held(key string) int {
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	if ls := s.leases.m[key]; ls != nil {
		return ls.left
	}
	return 0
}
