package fhir_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"secondlook/fhir"
	"secondlook/sandbox"
)

// BenchmarkRetrieveLargest retrieves the largest shared patient (Johnetta529: 83 DiagnosticReports, 15 Conditions,
// 147 result Observations) from the sandbox with 50 ms injected latency per request, sequentially and
// concurrently, with and without _include support at the server. See docs/benchmarks.md.
func BenchmarkRetrieveLargest(b *testing.B) {
	const patient = "abb133fd-5683-45cd-a5c8-137ca2807fbe"
	for _, include := range []bool{true, false} {
		for _, conc := range []int{1, 4, 8} {
			b.Run(fmt.Sprintf("include=%v/concurrency=%d", include, conc), func(b *testing.B) {
				h := newHospital(b, func(o *sandbox.SiteOptions) { o.DisableInclude = !include })
				h.site.Faults().Add(sandbox.Fault{Latency: 50 * time.Millisecond})
				c := h.client(b, func(o *fhir.Options) { o.Concurrency = conc; o.PageSize = 20 })
				if _, err := c.Capabilities(context.Background()); err != nil {
					b.Fatal(err)
				}
				var rec *fhir.Record
				b.ResetTimer()
				for b.Loop() {
					var err error
					rec, err = c.Retrieve(context.Background(), fhir.Query{PatientID: patient})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(rec.Stats.Requests), "requests/op")
				b.ReportMetric(float64(len(rec.Resources["DiagnosticReport"])+len(rec.Resources["Observation"])+len(rec.Resources["Condition"])), "resources/op")
			})
		}
	}
}
