package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"secondlook/store"
)

// Grant is what the patient granted at one source, without the tokens (which never leave this package except
// through the token source).
type Grant struct {
	// Key identifies the grant in the store and in Tokens and Revoke: ReviewID + "/" + SourceID.
	Key      string
	SourceID string
	ReviewID string
	// Patient is the patient id at the source, from the token response. It is PHI-adjacent: never log it.
	Patient string
	// FHIRUser is the id_token's fhirUser claim (relative or absolute URL), possibly empty.
	FHIRUser string
	// Scopes are the scopes granted, which may be fewer than asked.
	Scopes []string
	// GrantedTypes and DeniedTypes split the requested resource types by whether the granted scopes allow reading
	// and searching them, so the patient can be shown what was not shared.
	GrantedTypes []string
	DeniedTypes  []string
	// Refreshable reports whether the source issued a refresh token.
	Refreshable bool
	// AccessExpiry is the access token's expiry (zero if the source did not say).
	AccessExpiry time.Time
	// EHRLaunch reports that the authorization was an EHR launch (begun with BeginEHRLaunch): a clinician's session
	// in the EHR, not the patient's consent.
	EHRLaunch bool
	// GrantedAt is when the authorization completed; ExpiresAt when the stored grant lapses (Config.GrantTTL).
	GrantedAt time.Time
	ExpiresAt time.Time
}

// record is the stored form of a grant: sealed as a whole, with the grant key as additional data.
type record struct {
	Grant        Grant     `json:"grant"`
	AccessToken  string    `json:"at"`
	RefreshToken string    `json:"rt,omitempty"`
	TokenType    string    `json:"tt,omitempty"`
	Expiry       time.Time `json:"exp,omitzero"`
}

// GrantKey returns the key of the grant for a review at a source.
func GrantKey(reviewID, sourceID string) string { return reviewID + "/" + sourceID }

func (c *Client) saveRecord(ctx context.Context, rec *record) error {
	ttl := rec.Grant.ExpiresAt.Sub(c.now())
	if ttl <= 0 {
		return fmt.Errorf("%w: grant expired", ErrNoGrant)
	}
	plain, err := json.Marshal(rec) //nolint:gosec // G117: the tokens are sealed (AES-256-GCM) just below; only the sealed bytes are stored
	if err != nil {
		return fmt.Errorf("auth: encode grant: %w", err)
	}
	sealed, err := c.cfg.Keys.Seal(plain, []byte("grant:"+rec.Grant.Key))
	if err != nil {
		return fmt.Errorf("auth: seal grant: %w", err)
	}
	if err := c.grants.SaveGrant(ctx, rec.Grant.Key, sealed, ttl); err != nil {
		return fmt.Errorf("auth: save grant: %w", err)
	}
	return nil
}

func (c *Client) loadRecord(ctx context.Context, key string) (*record, error) {
	sealed, err := c.grants.LoadGrant(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoGrant
	}
	if err != nil {
		return nil, fmt.Errorf("auth: load grant: %w", err)
	}
	plain, err := c.cfg.Keys.Open(sealed, []byte("grant:"+key))
	if err != nil {
		return nil, fmt.Errorf("auth: open grant: %w", err)
	}
	var rec record
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, fmt.Errorf("auth: decode grant: %w", err)
	}
	if rec.Grant.Key != key {
		return nil, errors.New("auth: grant stored under another key")
	}
	return &rec, nil
}

// LoadGrant returns the stored grant (without its tokens), or ErrNoGrant.
func (c *Client) LoadGrant(ctx context.Context, grantKey string) (*Grant, error) {
	rec, err := c.loadRecord(ctx, grantKey)
	if err != nil {
		return nil, err
	}
	g := rec.Grant
	return &g, nil
}

// scopeRE matches a SMART clinical scope: context/Type.permissions, with an optional v2 query.
var scopeRE = regexp.MustCompile(`^(patient|user)/([A-Za-z*]+)\.([a-z*]+)(\?.*)?$`)

// splitTypes decides, for each requested type, whether the granted scopes let the gateway read and search it.
// A v2 scope narrowed by a query (patient/Observation.rs?category=laboratory) counts as granted: what it excludes
// is the server's to filter.
func splitTypes(granted []string, types []string) (ok, denied []string) {
	allows := func(t string) bool {
		for _, s := range granted {
			m := scopeRE.FindStringSubmatch(s)
			if m == nil || (m[2] != t && m[2] != "*") {
				continue
			}
			switch p := m[3]; {
			case p == "read" || p == "*":
				return true
			case strings.Contains(p, "r") && strings.Contains(p, "s") && strings.Trim(p, "cruds") == "":
				return true
			}
		}
		return false
	}
	for _, t := range types {
		if allows(t) {
			ok = append(ok, t)
		} else {
			denied = append(denied, t)
		}
	}
	return ok, denied
}

func parseScope(s string) []string {
	f := strings.Fields(s)
	slices.Sort(f)
	return slices.Compact(f)
}
