// Package metrics is the gateway's Prometheus instrumentation. Every label is chosen from a closed, PHI-free set:
// route patterns (never paths), methods, status codes, configured source ids, FHIR resource types and interactions,
// outcome classes and assembly stages. Nothing a caller or a source sends becomes a label value.
package metrics

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the gateway's collectors, registered in their own registry.
type Metrics struct {
	registry *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	upstream     *prometheus.CounterVec
	upstreamTime *prometheus.HistogramVec
	retries      *prometheus.CounterVec
	assemblies   *prometheus.CounterVec
	assemblyTime prometheus.Histogram
	stageTime    *prometheus.HistogramVec
	consents     *prometheus.CounterVec
}

// New creates the collectors, with the Go and process collectors.
func New() *Metrics {
	m := &Metrics{registry: prometheus.NewRegistry()}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "secondlook", Name: "http_requests_total",
		Help: "HTTP requests served, by route pattern, method and status."}, []string{"route", "method", "status"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "secondlook", Name: "http_request_duration_seconds",
		Help: "HTTP request latency by route pattern and method.", Buckets: prometheus.DefBuckets}, []string{"route", "method"})
	m.upstream = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "secondlook", Name: "upstream_requests_total",
		Help: "Requests to FHIR sources, by source, interaction, resource type and outcome (HTTP status class or network)."},
		[]string{"source", "interaction", "type", "outcome"})
	m.upstreamTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "secondlook", Name: "upstream_request_duration_seconds",
		Help: "Latency of requests to FHIR sources.", Buckets: prometheus.DefBuckets}, []string{"source"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "secondlook", Name: "upstream_retries_total",
		Help: "Retried requests to FHIR sources."}, []string{"source"})
	m.assemblies = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "secondlook", Name: "assemblies_total",
		Help: "Assembly attempts by outcome (ready, retry, failed)."}, []string{"outcome"})
	m.assemblyTime = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "secondlook", Name: "assembly_duration_seconds",
		Help: "Time to assemble a packet, end to end.", Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}})
	m.stageTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "secondlook", Name: "assembly_stage_duration_seconds",
		Help: "Time spent in each assembly stage.", Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"stage"})
	m.consents = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "secondlook", Name: "consent_events_total",
		Help: "Consent events: granted (per source) and withdrawn (per review)."}, []string{"event"})
	m.registry.MustRegister(m.httpRequests, m.httpDuration, m.upstream, m.upstreamTime, m.retries, m.assemblies, m.assemblyTime,
		m.stageTime, m.consents, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// HTTP records one served request. route must be the route pattern ("/api/v1/packets/:id"), never the path.
func (m *Metrics) HTTP(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// Upstream returns the observer for one source's FHIR client.
func (m *Metrics) Upstream(source string) *UpstreamObserver {
	return &UpstreamObserver{m: m, source: source}
}

// UpstreamObserver records one source's requests; it satisfies fhir.Observer.
type UpstreamObserver struct {
	m      *Metrics
	source string
}

// Request records a request: op is the client's operation name ("search DiagnosticReport", "read Binary"), status
// the HTTP status or 0 for a network failure.
func (o *UpstreamObserver) Request(op string, status int, retry bool, d time.Duration) {
	interaction, typ, _ := strings.Cut(op, " ")
	outcome := "network"
	if status > 0 {
		outcome = strconv.Itoa(status/100) + "xx"
	}
	o.m.upstream.WithLabelValues(o.source, interaction, typ, outcome).Inc()
	o.m.upstreamTime.WithLabelValues(o.source).Observe(d.Seconds())
	if retry {
		o.m.retries.WithLabelValues(o.source).Inc()
	}
}

// Assembled records an assembly attempt's outcome and duration; it and Stage satisfy assembly.Observer.
func (m *Metrics) Assembled(outcome string, d time.Duration) {
	m.assemblies.WithLabelValues(outcome).Inc()
	if outcome == "ready" {
		m.assemblyTime.Observe(d.Seconds())
	}
}

// Stage records the time an assembly spent in one stage.
func (m *Metrics) Stage(stage string, d time.Duration) {
	m.stageTime.WithLabelValues(stage).Observe(d.Seconds())
}

// Consent counts a consent event: "granted" or "withdrawn".
func (m *Metrics) Consent(event string) { m.consents.WithLabelValues(event).Inc() }

// QueueGauges registers gauges read at scrape time: pending and delayed assembly jobs.
func (m *Metrics) QueueGauges(depth func(ctx context.Context) (pending, delayed int64, err error)) {
	read := func(delayed bool) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			p, d, err := depth(ctx)
			if err != nil {
				return -1
			}
			if delayed {
				return float64(d)
			}
			return float64(p)
		}
	}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "secondlook", Name: "assembly_jobs_pending",
			Help: "Assembly jobs waiting or in progress (-1 when Redis does not answer)."}, read(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "secondlook", Name: "assembly_jobs_delayed",
			Help: "Assembly retries scheduled (-1 when Redis does not answer)."}, read(true)),
	)
}

// ReviewGauges registers the review counts read at scrape time: secondlook_reviews{state} for the live states
// (awaiting-consent, consented, assembling, ready) and secondlook_reviews_ended_total{state} for the final ones
// (expired, withdrawn, failed). Nothing is exported when Redis does not answer.
func (m *Metrics) ReviewGauges(counts func(ctx context.Context) (map[string]int64, error), live []string) {
	m.registry.MustRegister(&reviewCollector{counts: counts, live: live,
		now:   prometheus.NewDesc("secondlook_reviews", "Reviews now in each live state.", []string{"state"}, nil),
		ended: prometheus.NewDesc("secondlook_reviews_ended_total", "Reviews that ended in each final state.", []string{"state"}, nil),
	})
}

type reviewCollector struct {
	counts     func(ctx context.Context) (map[string]int64, error)
	live       []string
	now, ended *prometheus.Desc
}

func (c *reviewCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.now; ch <- c.ended }

func (c *reviewCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.counts(ctx)
	if err != nil {
		return
	}
	for _, st := range c.live {
		ch <- prometheus.MustNewConstMetric(c.now, prometheus.GaugeValue, float64(max(counts[st], 0)), st)
	}
	for st, n := range counts {
		if !slices.Contains(c.live, st) {
			ch <- prometheus.MustNewConstMetric(c.ended, prometheus.CounterValue, float64(max(n, 0)), st)
		}
	}
}
