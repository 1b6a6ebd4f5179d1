package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
)

// algOf names the JWS algorithm packet.Build uses for a key.
func algOf(k crypto.Signer, fallback string) string {
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P384() {
			return "ES384"
		}
		return "ES256"
	case *rsa.PublicKey:
		return "RS256"
	}
	return fallback
}
