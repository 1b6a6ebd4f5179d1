package auth

import "errors"

// tokenOp names a request to the token or revocation endpoint by what it is for, for its span
// ("SMART token refresh").
func tokenOp(kind error) string {
	switch {
	case errors.Is(kind, ErrRefresh):
		return "token refresh"
	case errors.Is(kind, ErrRevoke):
		return "revoke"
	}
	return "token"
}
