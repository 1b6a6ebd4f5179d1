package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"

	"secondlook/fhir/deid"
	"secondlook/packet"
)

// Walkthrough plays the whole flow over HTTP and reports each step to out: the patient consents at both sources
// in a browser session, the gateway assembles the packet, the provider lists and downloads it, verifies its
// signature against the gateway's published keys, and scans it for every identifier of the raw records. It returns
// nil only if the packet verified and carries no PHI.
func (d *Demo) Walkthrough(ctx context.Context, out io.Writer) error {
	step := func(format string, args ...any) { fmt.Fprintf(out, "  ✓ "+format+"\n", args...) }
	fmt.Fprintf(out, "1. The hospital EHR created review %s (SMART Backend Services token from the sandbox issuer).\n", d.ReviewID)

	fmt.Fprintln(out, "2. The patient consents at each source:")
	b := NewBrowser()
	if err := b.Get(ctx, d.ConsentURL); err != nil {
		return fmt.Errorf("open the consent page: %w", err)
	}
	step("opened the consent page %s", d.ConsentURL)
	for _, src := range []string{"hospital", "province"} {
		if err := b.Follow(ctx, "authorize-"+src); err != nil {
			return fmt.Errorf("authorize at %s: %w", src, err)
		}
		if err := b.Submit(ctx, "approve", map[string][]string{"patient": {Patient}}); err != nil {
			return fmt.Errorf("approve at %s: %w", src, err)
		}
		state, err := b.Text("state-" + src)
		if err != nil {
			return fmt.Errorf("back from %s: %w", src, err)
		}
		step("signed in at the %s's authorization server, approved, came back: %q", src, state)
	}

	fmt.Fprintln(out, "3. The gateway assembles the packet:")
	var rv struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	last := ""
	for {
		if _, _, err := d.API(ctx, EHRClient, http.MethodGet, "/api/v1/reviews/"+d.ReviewID, nil, &rv); err != nil {
			return fmt.Errorf("follow the review: %w", err)
		}
		if rv.State != last {
			step("review state: %s", rv.State)
			last = rv.State
		}
		if rv.State == "ready" {
			break
		}
		if rv.State == "failed" || rv.State == "withdrawn" || rv.State == "expired" {
			return fmt.Errorf("review ended %s: %s", rv.State, rv.Reason)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("review not ready after 2 minutes (%s)", rv.State)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}

	fmt.Fprintln(out, "4. The provider reads the packet:")
	var list struct {
		Packets []struct {
			ID string `json:"id"`
		} `json:"packets"`
	}
	if _, _, err := d.API(ctx, ProviderClient, http.MethodGet, "/api/v1/packets", nil, &list); err != nil {
		return fmt.Errorf("list packets: %w", err)
	}
	if len(list.Packets) != 1 {
		return fmt.Errorf("the provider sees %d packets, want 1", len(list.Packets))
	}
	step("listed 1 packet shared with %s", ProviderClient)
	resp, pkt, err := d.API(ctx, ProviderClient, http.MethodGet, "/api/v1/packets/"+list.Packets[0].ID, nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download the packet: %v", err)
	}
	step("downloaded it: %d bytes of %s", len(pkt), resp.Header.Get("Content-Type"))

	keys, err := d.jwks(ctx)
	if err != nil {
		return err
	}
	if err := packet.Verify(pkt, keys); err != nil {
		return fmt.Errorf("packet signature: %w", err)
	}
	step("verified its signature against %s/.well-known/jwks.json", d.GatewayURL)
	if err := deid.Scan(d.raw, pkt); err != nil {
		return fmt.Errorf("PHI in the packet: %w", err)
	}
	for _, s := range []string{"Todd315", "Stamm704", "999-35-5722", "555-788-5466", Patient} {
		if bytes.Contains(pkt, []byte(s)) {
			return fmt.Errorf("PHI in the packet: an identifier of the demo patient")
		}
	}
	step("scanned it for every identifier of the raw records: none found")
	counts, err := packet.EntryTypes(pkt)
	if err != nil {
		return err
	}
	step("it holds %d diagnostic reports, %d observations, %d conditions, %d imaging studies from both sources",
		counts["DiagnosticReport"], counts["Observation"], counts["Condition"], counts["ImagingStudy"])
	return nil
}

func (d *Demo) jwks(ctx context.Context) (*jose.JSONWebKeySet, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.GatewayURL+"/.well-known/jwks.json", nil)
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the gateway's keys: %w", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch the gateway's keys: %w", err)
	}
	return &set, nil
}
