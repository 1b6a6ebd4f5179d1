package auth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Revoke withdraws a grant: it revokes the refresh token and the access token at the source (RFC 7009) when the
// source publishes a revocation_endpoint, then deletes the stored grant whatever the source answered, so the
// gateway can no longer use it. It holds the grant's refresh lock meanwhile, so an in-flight refresh cannot store
// new tokens after the deletion. A failure at the source is returned wrapping ErrRevoke after the local deletion;
// revoking a grant that does not exist returns ErrNoGrant.
func (c *Client) Revoke(ctx context.Context, grantKey string) error {
	unlock, err := c.grants.Lock(ctx, grantKey, refreshLockTTL)
	if err != nil {
		return fmt.Errorf("auth: revoke: lock: %w", err)
	}
	defer func() { _ = unlock(context.WithoutCancel(ctx)) }()

	rec, err := c.loadRecord(ctx, grantKey)
	if errors.Is(err, ErrNoGrant) {
		return ErrNoGrant
	}
	var remote error
	if err != nil {
		// Unreadable (for instance sealed under a retired key): nothing to revoke remotely, delete all the same.
		remote = fmt.Errorf("%w: grant unreadable: %w", ErrRevoke, err)
	} else {
		remote = c.revokeRemote(ctx, rec)
	}
	if err := c.grants.DeleteGrant(ctx, grantKey); err != nil {
		return fmt.Errorf("auth: revoke: delete grant: %w", err)
	}
	if remote != nil {
		c.log.Warn("smart revocation at the source failed; local grant deleted", "error", remote)
		return remote
	}
	c.log.Info("smart grant revoked", "source", rec.Grant.SourceID)
	return nil
}

func (c *Client) revokeRemote(ctx context.Context, rec *record) error {
	src, ok := c.sources[rec.Grant.SourceID]
	if !ok {
		return fmt.Errorf("%w: source no longer configured", ErrRevoke)
	}
	d, err := c.discover(ctx, src.ID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRevoke, err)
	}
	endpoint := d.conf.RevocationEndpoint
	if endpoint == "" {
		return nil // the source does not support revocation; deleting our copy is all we can do
	}
	var errs []error
	if rec.RefreshToken != "" {
		if _, err := c.postToken(ctx, src, endpoint, url.Values{"token": {rec.RefreshToken}, "token_type_hint": {"refresh_token"}}, ErrRevoke); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := c.postToken(ctx, src, endpoint, url.Values{"token": {rec.AccessToken}, "token_type_hint": {"access_token"}}, ErrRevoke); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
