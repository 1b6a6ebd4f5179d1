package sandbox_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"secondlook/sandbox"
)

// ExampleNew starts the default site on a loopback test server and makes its next DiagnosticReport search fail
// once with 503, as a client retry test would.
func ExampleNew() {
	srv, err := sandbox.New(sandbox.Options{}) // one site, "hospital", with the embedded seed bundles
	if err != nil {
		fmt.Println(err)
		return
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	site := srv.Site(sandbox.DefaultSiteName)
	site.Faults().Add(sandbox.Fault{Path: "DiagnosticReport", Times: 1, Status: http.StatusServiceUnavailable, RetryAfter: "1"})

	base := hs.URL + "/hospital/fhir"
	for range 2 {
		resp, err := http.Get(base + "/DiagnosticReport?patient=" + site.Patients()[0] + "&_count=10")
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	fmt.Println(site.Requests())
	// Output:
	// 503
	// 200
	// 2
}
