package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"secondlook/caller"
)

// callerVerifier authenticates API callers.
type callerVerifier interface {
	Verify(ctx context.Context, raw string) (*caller.Client, error)
}

const callerKey = "secondlook.caller"

// callerLimiter shares a rate bucket per caller across every replica.
type callerLimiter interface {
	Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error)
}

// DefaultCallerRate and DefaultCallerBurst are the rate per caller (requests a second, and at once) when a server
// is built without one, shared by every replica; the gateway's configuration sets its own (callers.rate_limit).
const (
	DefaultCallerRate  = 50
	DefaultCallerBurst = 100
)

// requireCaller authenticates the bearer token and admits only callers of the given kind. A missing or invalid token
// is 401 with WWW-Authenticate; a valid token of another kind of caller is 403; a caller over its rate is 429 with
// Retry-After.
func requireCaller(v callerVerifier, kind caller.Kind, lim callerLimiter, rate float64, burst int) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get("Authorization")
			raw, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || raw == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="secondlook"`)
				return problemf(http.StatusUnauthorized, "A bearer token is required.")
			}
			cl, err := v.Verify(c.Request().Context(), strings.TrimSpace(raw))
			switch {
			case errors.Is(err, caller.ErrForbidden):
				return problemf(http.StatusForbidden, "This client is not registered with the gateway.")
			case err != nil:
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="secondlook", error="invalid_token"`)
				return problemf(http.StatusUnauthorized, "The bearer token is not valid.")
			case cl.Kind != kind:
				return problemf(http.StatusForbidden, "This client may not use this endpoint.")
			}
			if lim != nil {
				ok, wait, err := lim.Allow(c.Request().Context(), "caller:"+cl.ID, rate, burst)
				if err != nil {
					return fmt.Errorf("caller bucket: %w", err)
				}
				if !ok {
					c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
					return problemf(http.StatusTooManyRequests, "Too many requests from this client; retry after the time in Retry-After.")
				}
			}
			c.Set(callerKey, cl)
			return next(c)
		}
	}
}

func callerOf(c echo.Context) *caller.Client {
	cl, _ := c.Get(callerKey).(*caller.Client)
	return cl
}
