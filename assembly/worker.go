package assembly

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"secondlook/consent"
	"secondlook/fhir"
	"secondlook/fhir/deid"
	"secondlook/packet"
	"secondlook/review"
	"secondlook/store"
)

// Reviews is the review storage the worker needs.
type Reviews interface {
	GetReview(ctx context.Context, id string) (*review.Review, error)
	SetProgress(ctx context.Context, id, stage string) error
	MoveReview(ctx context.Context, id string, from []review.State, to review.State, reason string) (*review.Review, error)
}

// Consents returns a review's consents.
type Consents interface {
	Consents(ctx context.Context, reviewID string) ([]consent.Record, error)
}

// Queue is the assembly job queue.
type Queue interface {
	Next(ctx context.Context, consumer string, visibility, block time.Duration) (*store.Job, error)
	Touch(ctx context.Context, consumer string, job *store.Job) error
	Ack(ctx context.Context, job *store.Job) error
	Retry(ctx context.Context, job *store.Job, delay time.Duration) error
	Attempt(ctx context.Context, reviewID string) (int, error)
}

// Packets stores finished packets.
type Packets interface {
	SavePacket(ctx context.Context, p store.StoredPacket, bundle []byte, expires time.Time) (bool, error)
	DeletePacket(ctx context.Context, reviewID string) error
}

// Source is one configured FHIR source as the worker reads it.
type Source struct {
	Client *fhir.Client
	Kind   string
}

// Config holds a worker's dependencies.
type Config struct {
	Reviews  Reviews
	Consents Consents
	Queue    Queue
	Packets  Packets
	Sources  map[string]Source
	// Tokens returns the token source of a grant (auth.Client.Tokens).
	Tokens func(grantKey string) fhir.TokenSource
	// GrantKey names the grant of a review at a source (auth.GrantKey).
	GrantKey func(reviewID, sourceID string) string
	// Key and Profile de-identify every source; Key must be the same in every replica.
	Key     deid.Key
	Profile *deid.Profile
	// Scan, when set, is an additional check over the finished packet, after the residual scan the de-identifier
	// built from the raw inputs (which always runs).
	Scan   func(inputs [][]byte, packet []byte) error
	Signer packet.Signer
	// Consumer names this worker in the consumer group; unique per process.
	Consumer string
	// MaxAttempts bounds tries per review (default 5); BaseDelay is the first retry's delay, doubling (default 5s).
	MaxAttempts int
	BaseDelay   time.Duration
	// Visibility is how long a job may go unacknowledged before another worker takes it (default 2m); the worker
	// touches its job while it works, so only a dead worker's job is taken.
	Visibility time.Duration
	// SourceTimeout bounds retrieval from one source (default 5m).
	SourceTimeout time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
	// Observer, when set, is told each attempt's outcome and each stage's duration (metrics).
	Observer Observer
	// TracerProvider, when set, traces each attempt at a job (see startSpan).
	TracerProvider trace.TracerProvider
}

// Observer receives assembly measurements: outcome is ready, retry or failed.
type Observer interface {
	Assembled(outcome string, d time.Duration)
	Stage(stage string, d time.Duration)
}

// Worker assembles packets.
type Worker struct {
	cfg Config
}

// New checks cfg and returns a Worker.
func New(cfg Config) (*Worker, error) {
	var problems []error
	if cfg.Reviews == nil || cfg.Consents == nil || cfg.Queue == nil || cfg.Packets == nil || cfg.Tokens == nil || cfg.GrantKey == nil {
		problems = append(problems, errors.New("assembly: reviews, consents, queue, packets, tokens and grant key are required"))
	}
	if cfg.Signer.Key == nil {
		problems = append(problems, errors.New("assembly: a signing key is required"))
	}
	if len(cfg.Key.Secret) < deid.MinSecretBytes {
		problems = append(problems, errors.New("assembly: the de-identification key is too short"))
	}
	if cfg.Consumer == "" {
		problems = append(problems, errors.New("assembly: a consumer name is required"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = 5 * time.Second
	}
	if cfg.Visibility <= 0 {
		cfg.Visibility = 2 * time.Minute
	}
	if cfg.SourceTimeout <= 0 {
		cfg.SourceTimeout = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{cfg: cfg}, nil
}

// Run takes jobs until ctx is done. A job in progress when ctx ends is left unacknowledged, so another worker (or
// this one, restarted) takes it after the visibility timeout.
func (w *Worker) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		job, err := w.cfg.Queue.Next(ctx, w.cfg.Consumer, w.cfg.Visibility, 2*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "assembly queue read failed", slog.String("error", err.Error()))
			sleep(ctx, time.Second)
			continue
		}
		if job == nil {
			continue
		}
		w.handle(ctx, job)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle runs one job, keeping it alive while it works, and acknowledges, retries or fails it.
func (w *Worker) handle(ctx context.Context, job *store.Job) {
	log := w.cfg.Logger.With(slog.String("review", job.ReviewID))
	jctx, stop := context.WithCancel(ctx)
	jctx, span := w.startSpan(jctx, job.ReviewID)
	defer span.End()
	var wg sync.WaitGroup
	var lost atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(w.cfg.Visibility / 3)
		defer t.Stop()
		for {
			select {
			case <-jctx.Done():
				return
			case <-t.C:
				err := w.cfg.Queue.Touch(jctx, w.cfg.Consumer, job)
				if errors.Is(err, store.ErrJobLost) {
					// This worker stalled past the visibility timeout and another took the job over: two
					// workers on one job would pack it twice, so this one stops.
					lost.Store(true)
					stop()
					return
				}
				if err != nil {
					log.LogAttrs(jctx, slog.LevelWarn, "touch job failed", slog.String("error", err.Error()))
				}
			}
		}
	}()
	attempt, err := w.cfg.Queue.Attempt(ctx, job.ReviewID)
	if err != nil {
		stop()
		wg.Wait()
		log.LogAttrs(ctx, slog.LevelWarn, "count attempt failed", slog.String("error", err.Error()))
		return // the job stays pending and is retried after the visibility timeout
	}
	start := w.cfg.Now()
	err = w.assemble(jctx, job.ReviewID, attempt >= w.cfg.MaxAttempts)
	stop()
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: leave the job for another worker
	}
	if lost.Load() {
		log.LogAttrs(ctx, slog.LevelWarn, "job taken over by another worker: attempt abandoned")
		return // the job is the other worker's to finish, retry or fail
	}
	if err == nil {
		w.observe("ready", w.cfg.Now().Sub(start))
		log.LogAttrs(ctx, slog.LevelInfo, "review assembled", slog.Duration("duration", w.cfg.Now().Sub(start)))
		if err := w.cfg.Queue.Ack(ctx, job); err != nil {
			log.LogAttrs(ctx, slog.LevelWarn, "ack job failed", slog.String("error", err.Error()))
		}
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, "assembly failed", slog.Int("attempt", attempt), slog.String("error", err.Error()))
	var perm *permanentError
	if attempt >= w.cfg.MaxAttempts || errors.As(err, &perm) {
		w.observe("failed", w.cfg.Now().Sub(start))
		reason := "The records could not be assembled."
		if perm != nil {
			reason = perm.reason
		}
		if _, err := w.cfg.Reviews.MoveReview(ctx, job.ReviewID, []review.State{review.Consented, review.Assembling}, review.Failed, reason); err != nil &&
			!errors.Is(err, review.ErrTransition) {
			log.LogAttrs(ctx, slog.LevelWarn, "mark review failed", slog.String("error", err.Error()))
			return
		}
		_ = w.cfg.Queue.Ack(ctx, job)
		return
	}
	w.observe("retry", w.cfg.Now().Sub(start))
	delay := w.cfg.BaseDelay << (attempt - 1)
	if err := w.cfg.Queue.Retry(ctx, job, delay); err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "schedule retry failed", slog.String("error", err.Error()))
	}
}

func (w *Worker) observe(outcome string, d time.Duration) {
	if w.cfg.Observer != nil {
		w.cfg.Observer.Assembled(outcome, d)
	}
}

// stages records the assembly stage in the review's progress and the time spent in each (metrics).
type stages struct {
	w      *Worker
	ctx    context.Context
	review string
	cur    string
	at     time.Time
}

func (s *stages) to(next string) {
	s.done()
	s.cur, s.at = next, s.w.cfg.Now()
	trace.SpanFromContext(s.ctx).AddEvent(next)
	s.w.progress(s.ctx, s.review, next)
}

func (s *stages) done() {
	if s.cur != "" && s.w.cfg.Observer != nil {
		s.w.cfg.Observer.Stage(s.cur, s.w.cfg.Now().Sub(s.at))
	}
	s.cur = ""
}

// progress records the stage; a failure to record it does not stop the assembly.
func (w *Worker) progress(ctx context.Context, reviewID, stage string) {
	if err := w.cfg.Reviews.SetProgress(ctx, reviewID, stage); err != nil {
		w.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "record assembly progress failed", slog.String("error", err.Error()))
	}
}

// permanentError ends a review: retrying cannot help. reason is safe to show the requester.
type permanentError struct {
	reason string
	err    error
}

func (e *permanentError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Assemble builds and stores the review's packet, as a last attempt would: a source that fails is reported as
// missing in the packet rather than retried. It is idempotent: a ready, withdrawn, expired or failed review is left
// as it is.
func (w *Worker) Assemble(ctx context.Context, reviewID string) error {
	return w.assemble(ctx, reviewID, true)
}

// assemble builds the packet; unless final, a failing source makes it return an error (to be retried) instead of a
// packet without that source.
func (w *Worker) assemble(ctx context.Context, reviewID string, final bool) error {
	r, err := w.cfg.Reviews.GetReview(ctx, reviewID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // gone: nothing to do
	}
	if err != nil {
		return fmt.Errorf("load review: %w", err)
	}
	switch r.State {
	case review.Consented:
		if r, err = w.cfg.Reviews.MoveReview(ctx, reviewID, []review.State{review.Consented}, review.Assembling, ""); err != nil {
			if errors.Is(err, review.ErrTransition) {
				return nil // another worker, or a withdrawal, got there first
			}
			return fmt.Errorf("start assembly: %w", err)
		}
	case review.Assembling:
		// A re-delivered job: start again from the sources (nothing partial was stored).
	default:
		return w.settle(ctx, reviewID, r.State)
	}
	recs, err := w.cfg.Consents.Consents(ctx, reviewID)
	if err != nil {
		return fmt.Errorf("load consents: %w", err)
	}
	now := w.cfg.Now()
	var active []consent.Record
	for _, rec := range recs {
		if rec.Active(now) {
			active = append(active, rec)
		}
	}
	if len(active) == 0 {
		return &permanentError{reason: "No active consent remains.", err: errors.New("no active consent")}
	}

	st := &stages{w: w, ctx: ctx, review: reviewID}
	defer st.done()
	st.to(review.StageRetrieving)
	results := make([]sourceResult, len(active))
	var wg sync.WaitGroup
	for i, rec := range active {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.fromSource(ctx, r, rec)
		}()
	}
	wg.Wait()

	var sources []packet.Source
	var parts []fhir.Sourced
	var failures []error
	for i, res := range results {
		src := packet.Source{Kind: w.cfg.Sources[active[i].SourceID].Kind, Retrieved: res.rec != nil, Missing: res.missing}
		if res.err != nil {
			failures = append(failures, res.err)
			src.Missing = "the records could not be retrieved (" + res.errClass + ")"
		}
		sources = append(sources, src)
		if res.rec != nil {
			parts = append(parts, fhir.Sourced{BaseURL: res.base, Record: res.rec})
		}
	}
	if len(parts) == 0 {
		return fmt.Errorf("retrieve: %w", errors.Join(failures...))
	}
	if len(failures) > 0 && !final {
		// Try again for the sources that failed; on the last attempt the packet says what is missing instead.
		return fmt.Errorf("retrieve: %w", errors.Join(failures...))
	}
	// All sources are de-identified together: one key, one scope, one date shift for the whole record, so every
	// interval between events at different sources is exact.
	st.to(review.StageDeidentifying)
	input := fhir.CollectionBundle(parts)
	inputs := [][]byte{input}
	res, err := deid.Deidentify(input, deid.Options{Profile: w.cfg.Profile, Key: w.cfg.Key, Scope: r.ID, Now: w.cfg.Now})
	if err != nil {
		var re *deid.ResidualError
		var ie *deid.InputError
		if errors.As(err, &re) || errors.As(err, &ie) {
			return &permanentError{reason: "The records could not be de-identified safely and were not released.", err: err}
		}
		return fmt.Errorf("de-identify: %w", err)
	}
	st.to(review.StagePacking)
	id, err := newUUID()
	if err != nil {
		return err
	}
	pkt, err := packet.Build(packet.Input{
		ID: id, Created: now, Records: [][]byte{res.Bundle}, Sources: sources,
		Profile: res.Report.Profile, ProfileVersion: res.Report.ProfileVersion,
		// The fail-closed check: the residual scan of every identifier of the raw inputs, over the finished packet.
		Check: func(out []byte) error {
			if err := res.Scanner.Scan(out); err != nil {
				return err
			}
			if w.cfg.Scan != nil {
				return w.cfg.Scan(inputs, out)
			}
			return nil
		},
	}, w.cfg.Signer)
	if err != nil {
		var re *deid.ResidualError
		if errors.As(err, &re) {
			return &permanentError{reason: "The packet failed the de-identification check and was not released.", err: err}
		}
		return fmt.Errorf("build packet: %w", err)
	}
	report, err := json.Marshal(res.Report)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	// The patient may have withdrawn while we worked: store only if the review is still being assembled. A review
	// that cannot be read now is retried, never taken for a finished one: the job would be acknowledged and lost.
	cur, err := w.cfg.Reviews.GetReview(ctx, reviewID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load review: %w", err)
	}
	if cur.State != review.Assembling {
		return w.settle(ctx, reviewID, cur.State)
	}
	if _, err := w.cfg.Packets.SavePacket(ctx, store.StoredPacket{
		ID: pkt.ID, ReviewID: reviewID, Provider: r.Provider, ETag: pkt.ETag, Created: now, Report: report,
	}, pkt.Bundle, r.ExpiresAt); err != nil {
		return fmt.Errorf("store packet: %w", err)
	}
	if _, err := w.cfg.Reviews.MoveReview(ctx, reviewID, []review.State{review.Assembling}, review.Ready, ""); err != nil {
		if !errors.Is(err, review.ErrTransition) {
			// Retried, and the packet stays: the move and its audit entry are one step, so either both happened
			// (the reply, or the read of the moved review, was lost: the next attempt finds it ready and settles)
			// or neither (the next attempt finds it assembling and keeps the packet stored first).
			return fmt.Errorf("mark review ready: %w", err)
		}
		// The review left assembling while we stored: another worker on the same job made it ready first, with
		// whichever packet was stored first (SavePacket keeps it), or the patient withdrew.
		cur, err := w.cfg.Reviews.GetReview(ctx, reviewID)
		if err != nil {
			return fmt.Errorf("load review: %w", err)
		}
		return w.settle(ctx, reviewID, cur.State)
	}
	return nil
}

// settle ends the work on a review that is no longer being assembled: a ready review keeps its packet, and any
// other (withdrawn, expired, failed) keeps none, not even one stored by an attempt that its end overtook.
func (w *Worker) settle(ctx context.Context, reviewID string, state review.State) error {
	if state == review.Ready {
		return nil
	}
	if err := w.cfg.Packets.DeletePacket(ctx, reviewID); err != nil {
		return fmt.Errorf("remove packet: %w", err)
	}
	return nil
}

type sourceResult struct {
	rec      *fhir.Record
	base     string
	missing  string
	err      error
	errClass string
}

// fromSource retrieves one source's records with the patient's grant.
func (w *Worker) fromSource(ctx context.Context, r *review.Review, rec consent.Record) sourceResult {
	src, ok := w.cfg.Sources[rec.SourceID]
	if !ok {
		return sourceResult{err: fmt.Errorf("source %s is no longer configured", rec.SourceID), errClass: "source not configured"}
	}
	patient, ok := strings.CutPrefix(rec.PatientRef, "Patient/")
	if !ok {
		return sourceResult{err: errors.New("consent names no patient"), errClass: "no patient"}
	}
	types := rec.Granted
	if len(r.ResourceTypes) > 0 {
		types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return !slices.Contains(r.ResourceTypes, t) })
	}
	q := fhir.Query{PatientID: patient, Types: types, Tokens: w.cfg.Tokens(w.cfg.GrantKey(r.ID, rec.SourceID))}
	if r.LookBackDays > 0 {
		q.Since = r.CreatedAt.AddDate(0, 0, -r.LookBackDays)
	}
	sctx, cancel := context.WithTimeout(ctx, w.cfg.SourceTimeout)
	defer cancel()
	got, err := src.Client.Retrieve(sctx, q)
	if err != nil {
		return sourceResult{err: fmt.Errorf("source %s: %w", rec.SourceID, err), errClass: classify(err)}
	}
	out := sourceResult{rec: got, base: src.Client.BaseURL()}
	var parts []string
	for _, wn := range got.Warnings {
		parts = append(parts, fmt.Sprintf("%d %s %s", wn.Count, wn.ResourceType, wn.Code))
	}
	if len(parts) > 0 {
		out.missing = "left out: " + strings.Join(parts, ", ")
	}
	return out
}

// classify names an error's kind in words safe for a packet and a status page.
func classify(err error) string {
	var le *fhir.LimitError
	var oe *fhir.OutcomeError
	switch {
	case errors.As(err, &le):
		return "the records exceed the " + le.Limit + " limit"
	case errors.As(err, &oe):
		return fmt.Sprintf("the source answered HTTP %d", oe.StatusCode)
	case errors.Is(err, context.DeadlineExceeded):
		return "the source did not answer in time"
	case errors.Is(err, fhir.ErrInvalidResponse):
		return "the source sent an invalid response"
	}
	return "the source could not be reached"
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new packet id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}
