package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"secondlook/audit"
	"secondlook/review"
	"secondlook/store"
)

// packetSummary lists a packet shared with the caller.
type packetSummary struct {
	ID        string    `json:"id"`
	ReviewID  string    `json:"review"`
	Created   time.Time `json:"created"`
	ExpiresAt time.Time `json:"expiresAt"`
	ETag      string    `json:"etag"`
}

func (a *reviewAPI) listPackets(c echo.Context) error {
	ctx := c.Request().Context()
	cl := callerOf(c)
	ids, err := a.Store.ProviderReviews(ctx, cl.ID)
	if err != nil {
		return fmt.Errorf("list packets: %w", err)
	}
	out := []packetSummary{}
	now := a.Now()
	for _, id := range ids {
		r, err := a.Store.GetReview(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list packets: %w", err)
		}
		if r.Provider != cl.ID || r.State != review.Ready || !now.Before(r.ExpiresAt) {
			continue
		}
		p, err := a.Store.GetPacket(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list packets: %w", err)
		}
		out = append(out, packetSummary{ID: id, ReviewID: id, Created: p.Created, ExpiresAt: r.ExpiresAt, ETag: `"` + p.ETag + `"`})
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]any{"packets": out})
}

// packetFor loads the packet of review id for the calling provider. Another provider's packet, or none yet, is 404;
// a withdrawn or expired one is 410 (and its bytes are already gone).
//
// The decision is made on the review's access (provider, state, expiry) as this replica last read it, and the
// AuditEvent that records it is appended only if the review still has exactly that access, atomically in Redis
// (store.AppendAuditIf). A withdrawal therefore still cuts access at once, and a read costs a share of one round
// trip (the store sends every pending audit event together). A stale access is read again and decided again.
func (a *reviewAPI) packetFor(c echo.Context, action audit.Action) (*store.StoredPacket, error) {
	ctx := c.Request().Context()
	id := c.Param("id")
	cl := callerOf(c)
	if !review.ValidID(id) {
		return nil, problemf(http.StatusNotFound, "There is no such packet.")
	}
	for try := 0; ; try++ {
		acc := a.access.get(id)
		cached := acc != nil && try == 0
		if !cached {
			fresh, err := a.Store.ReviewAccess(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				a.access.drop(id)
				return nil, problemf(http.StatusNotFound, "There is no such packet.")
			}
			if err != nil {
				return nil, fmt.Errorf("get review: %w", err)
			}
			acc = fresh
			a.access.put(id, acc)
		}
		logReview(c, id) // the review exists: its access was read (now or before)
		d := decidePacketRead(acc, cl.ID, a.Now())
		if d.pending {
			if cached {
				continue // it may have become ready since: read again
			}
			return nil, d.refusal // not ready yet: nothing to read, nothing to record
		}
		if d.gone {
			a.packets.drop(id)
		}
		ev := audit.Event{Action: action, Outcome: d.outcome, At: a.Now(), ClientID: cl.ID, ReviewID: id}.JSON()
		err := a.Store.AppendAuditIf(ctx, id, ev, *acc)
		if errors.Is(err, store.ErrAccessChanged) && try < 3 {
			continue // decided on a stale access: read it again
		}
		if err != nil {
			// The access is unconfirmed and the read unrecorded: serve nothing.
			return nil, fmt.Errorf("record packet access: %w", err)
		}
		if d.refusal != nil {
			return nil, d.refusal
		}
		break
	}
	p := a.packets.get(id)
	if p == nil {
		var err error
		p, err = a.Store.GetPacket(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, problemf(http.StatusGone, "This packet is no longer available.")
		}
		if err != nil {
			return nil, fmt.Errorf("get packet: %w", err)
		}
		a.packets.put(id, p)
	}
	return p, nil
}

// packetRead is what a provider's read of a review's packet comes to on a given access.
type packetRead struct {
	outcome audit.Outcome // recorded in the AuditEvent
	refusal error         // the answer when the read is refused
	gone    bool          // withdrawn or expired: the packet's bytes must not stay cached
	pending bool          // not ready yet: nothing to read and nothing to record
}

func decidePacketRead(acc *store.Access, provider string, now time.Time) packetRead {
	if acc.Provider != provider {
		return packetRead{outcome: audit.Denied, refusal: problemf(http.StatusNotFound, "There is no such packet.")}
	}
	switch effectiveState(acc.State, acc.ExpiresAt, now) {
	case review.Ready:
		return packetRead{outcome: audit.Success}
	case review.Withdrawn, review.Expired:
		return packetRead{outcome: audit.Denied, gone: true,
			refusal: problemf(http.StatusGone, "This packet is no longer available: the consent was withdrawn or has expired.")}
	}
	return packetRead{pending: true, refusal: problemf(http.StatusNotFound, "There is no such packet.")}
}

// accessCache remembers each review's access as this replica last read it. It is only ever a starting point: every
// decision made on it is confirmed by the atomic audit append, which refuses a stale one.
type accessCache struct {
	mu   sync.Mutex
	byID map[string]*store.Access
}

// maxCachedAccess bounds the reviews remembered; when full the cache starts over.
const maxCachedAccess = 10000

func (c *accessCache) get(id string) *store.Access {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

func (c *accessCache) put(id string, acc *store.Access) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil || len(c.byID) >= maxCachedAccess {
		c.byID = map[string]*store.Access{}
	}
	c.byID[id] = acc
}

func (c *accessCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, id)
}

// packetCache keeps recently served packets in memory. A packet never changes once stored, and every request still
// reads the review's state first, so a withdrawn or expired packet is refused (and dropped) however warm the cache.
type packetCache struct {
	mu    sync.Mutex
	byID  map[string]*store.StoredPacket
	bytes int
}

const packetCacheBytes = 64 << 20

func (c *packetCache) get(id string) *store.StoredPacket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

func (c *packetCache) put(id string, p *store.StoredPacket) {
	size := len(p.Gzip) + len(p.Report)
	if size > packetCacheBytes/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil || c.bytes+size > packetCacheBytes {
		c.byID, c.bytes = map[string]*store.StoredPacket{}, 0
	}
	c.byID[id] = p
	c.bytes += size
}

func (c *packetCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.byID[id]; ok {
		c.bytes -= len(p.Gzip) + len(p.Report)
		delete(c.byID, id)
	}
}

func (a *reviewAPI) getPacket(c echo.Context) error {
	p, err := a.packetFor(c, audit.PacketRead)
	if err != nil {
		return err
	}
	etag := `"` + p.ETag + `"`
	h := c.Response().Header()
	h["Etag"] = []string{etag}
	h[packetCacheControl.name] = packetCacheControl.value
	h[varyEncoding.name] = varyEncoding.value
	if inm := c.Request().Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		return c.NoContent(http.StatusNotModified)
	}
	if acceptsGzip(c.Request().Header.Get("Accept-Encoding")) {
		h[gzipEncoding.name] = gzipEncoding.value
		h["Content-Length"] = []string{strconv.Itoa(len(p.Gzip))}
		return c.Blob(http.StatusOK, "application/fhir+json", p.Gzip)
	}
	b, err := p.Bundle()
	if err != nil {
		return err
	}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	return c.Blob(http.StatusOK, "application/fhir+json", b)
}

// The constant headers of a packet response, shared (see headerField).
var (
	packetCacheControl = field("Cache-Control", "private, no-cache")
	varyEncoding       = field("Vary", "Accept-Encoding")
	gzipEncoding       = field("Content-Encoding", "gzip")
)

func (a *reviewAPI) getReport(c echo.Context) error {
	p, err := a.packetFor(c, audit.ReportRead)
	if err != nil {
		return err
	}
	c.Response().Header()[packetCacheControl.name] = packetCacheControl.value
	return c.Blob(http.StatusOK, "application/json", p.Report)
}

func etagMatch(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		p := strings.TrimSpace(part)
		if p == "*" || p == etag || strings.TrimPrefix(p, "W/") == etag {
			return true
		}
	}
	return false
}

func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") {
			return true
		}
	}
	return false
}
