package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"secondlook/caller"
)

// callerVerifier authenticates API callers.
type callerVerifier interface {
	Verify(ctx context.Context, raw string) (*caller.Client, error)
}

const callerKey = "secondlook.caller"

// requireCaller authenticates the bearer token and admits only callers of the given kind. A missing or invalid token
// is 401 with WWW-Authenticate; a valid token of another kind of caller is 403.
func requireCaller(v callerVerifier, kind caller.Kind) echo.MiddlewareFunc {
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
			c.Set(callerKey, cl)
			return next(c)
		}
	}
}

func callerOf(c echo.Context) *caller.Client {
	cl, _ := c.Get(callerKey).(*caller.Client)
	return cl
}
