package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"secondlook/tracing"
)

// refreshLockTTL bounds how long one replica may hold a grant's refresh lock.
const refreshLockTTL = 30 * time.Second

// refreshTimeout bounds one refresh, the wait for the lock included.
const refreshTimeout = 25 * time.Second

// maxTokenResponseBytes bounds a token endpoint response.
const maxTokenResponseBytes = 1 << 20

// Tokens is the FHIR client's token source for one grant (it implements fhir.TokenSource and fhir.Refresher).
// It keeps nothing in memory: every call reads the sealed grant from the store, so all replicas agree.
type Tokens struct {
	c   *Client
	key string
}

// Tokens returns the token source of a grant.
func (c *Client) Tokens(grantKey string) *Tokens { return &Tokens{c: c, key: grantKey} }

// Token returns a valid access token, refreshing it first when it expires within Config.RefreshBefore.
func (t *Tokens) Token(ctx context.Context) (string, error) {
	rec, err := t.c.loadRecord(ctx, t.key)
	if err != nil {
		return "", err
	}
	if t.c.fresh(rec) {
		return rec.AccessToken, nil
	}
	return t.c.refresh(ctx, t.key, "")
}

// Refresh replaces an access token the server rejected (401). If the stored token already differs from rejected,
// another request or replica has refreshed in the meantime and the stored one is returned without a new refresh.
func (t *Tokens) Refresh(ctx context.Context, rejected string) (string, error) {
	if rejected == "" {
		return "", errors.New("auth: refresh: the rejected token is required")
	}
	return t.c.refresh(ctx, t.key, rejected)
}

func (c *Client) fresh(rec *record) bool {
	return rec.Expiry.IsZero() || c.now().Add(c.cfg.RefreshBefore).Before(rec.Expiry)
}

// refresh runs at most one refresh per grant in this process (singleflight) and, through the GrantStore lock, in
// all replicas; after taking the lock it reloads the grant, since another replica may have refreshed already.
func (c *Client) refresh(ctx context.Context, key, rejected string) (string, error) {
	ch := c.refreshSF.DoChan(key, func() (any, error) {
		// The refresh is shared by every waiting caller: one caller's cancellation must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
		defer cancel()
		return c.refreshLocked(ctx, key, rejected)
	})
	select {
	case <-ctx.Done():
		return "", context.Cause(ctx)
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	}
}

func (c *Client) refreshLocked(ctx context.Context, key, rejected string) (string, error) {
	unlock, err := c.grants.Lock(ctx, key, refreshLockTTL)
	if err != nil {
		return "", fmt.Errorf("%w: lock: %w", ErrRefresh, err)
	}
	defer func() {
		if err := unlock(context.WithoutCancel(ctx)); err != nil {
			c.log.Warn("smart refresh lock release failed", "error", err)
		}
	}()
	rec, err := c.loadRecord(ctx, key)
	if err != nil {
		return "", err
	}
	if rejected != "" && rec.AccessToken != rejected {
		return rec.AccessToken, nil // refreshed by someone else since the request was made
	}
	if rejected == "" && c.fresh(rec) {
		return rec.AccessToken, nil
	}
	if rec.RefreshToken == "" {
		c.log.Info("smart grant cannot be refreshed", "source", rec.Grant.SourceID)
		return "", fmt.Errorf("%w: no refresh token", ErrReauthorize)
	}
	src, ok := c.sources[rec.Grant.SourceID]
	if !ok {
		return "", ErrUnknownSource
	}
	d, err := c.discover(ctx, src.ID)
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rec.RefreshToken}}
	resp, err := c.postToken(ctx, src, d.conf.TokenEndpoint, form, ErrRefresh)
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) && te.Code == "invalid_grant" {
			c.log.Warn("smart refresh rejected", "source", src.ID, "status", te.Status, "code", te.Code)
			return "", &TokenError{Kind: ErrReauthorize, Status: te.Status, Code: te.Code}
		}
		c.log.Warn("smart refresh failed", "source", src.ID, "error", err)
		return "", err
	}
	var tr struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		ExpiresIn    json.Number     `json:"expires_in"`
		RefreshToken string          `json:"refresh_token"`
		Scope        *string         `json:"scope"`
		Patient      json.RawMessage `json:"patient"`
	}
	if err := json.Unmarshal(resp, &tr); err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("%w: malformed token response", ErrRefresh)
	}
	now := c.now()
	rec.AccessToken = tr.AccessToken
	if tr.TokenType != "" {
		rec.TokenType = tr.TokenType
	}
	if tr.RefreshToken != "" {
		rec.RefreshToken = tr.RefreshToken
	}
	rec.Expiry = time.Time{}
	if n, err := tr.ExpiresIn.Int64(); err == nil && n > 0 {
		rec.Expiry = now.Add(time.Duration(n) * time.Second)
	}
	rec.Grant.AccessExpiry = rec.Expiry
	rec.Grant.Refreshable = rec.RefreshToken != ""
	if tr.Scope != nil {
		rec.Grant.Scopes = parseScope(*tr.Scope)
		rec.Grant.GrantedTypes, rec.Grant.DeniedTypes = splitTypes(rec.Grant.Scopes, src.types)
	}
	if err := c.saveRecord(ctx, rec); err != nil {
		return "", err
	}
	c.log.Info("smart token refreshed", "source", src.ID, "rotated_refresh_token", tr.RefreshToken != "")
	return rec.AccessToken, nil
}

// postToken POSTs form to a token-endpoint-authenticated URL (token, revocation) with the source's client
// authentication and returns the body of a 200 response. Errors carry the status and the OAuth error code only.
func (c *Client) postToken(ctx context.Context, src *source, endpoint string, form url.Values, kind error) ([]byte, error) {
	form = cloneValues(form)
	req, err := http.NewRequestWithContext(tracing.WithOperation(ctx, tokenOp(kind)), http.MethodPost, endpoint, nil)
	if err != nil {
		return nil, &TokenError{Kind: kind, Code: "request"}
	}
	switch src.Method {
	case MethodClientSecretBasic:
		// RFC 6749 2.3.1: form-urlencode the id and secret before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(src.ClientID), url.QueryEscape(string(src.Secret)))
	case MethodPrivateKeyJWT:
		conf, err := c.discover(ctx, src.ID)
		if err != nil {
			return nil, err
		}
		assertion, err := c.clientAssertion(src, conf.conf.TokenEndpoint)
		if err != nil {
			return nil, &TokenError{Kind: kind, Code: "assertion"}
		}
		form.Set("client_id", src.ClientID)
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", assertion)
	case MethodNone:
		form.Set("client_id", src.ClientID)
	}
	body := form.Encode()
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", kind, context.Cause(ctx))
		}
		return nil, &TokenError{Kind: kind, Code: "transport"}
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponseBytes))
	if err != nil {
		return nil, &TokenError{Kind: kind, Status: resp.StatusCode, Code: "transport"}
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
			_ = json.Unmarshal(data, &e)
		}
		return nil, &TokenError{Kind: kind, Status: resp.StatusCode, Code: oauthCode(e.Error)}
	}
	return data, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
