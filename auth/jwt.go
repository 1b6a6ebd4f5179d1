package auth

import (
	"crypto"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime keeps client assertions inside SMART's five-minute bound with room for clock skew.
const assertionLifetime = 4 * time.Minute

// clientAssertion signs a private_key_jwt client assertion for the token endpoint: iss = sub = client id,
// aud = token endpoint, a unique jti, exp four minutes ahead, and the key's kid in the header.
func (c *Client) clientAssertion(src *source, tokenEndpoint string) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(src.Alg), Key: src.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), src.KeyID),
	)
	if err != nil {
		return "", fmt.Errorf("build signer: %w", err)
	}
	now := c.now()
	claims := jwt.Claims{
		Issuer:    src.ClientID,
		Subject:   src.ClientID,
		Audience:  jwt.Audience{tokenEndpoint},
		ID:        randomToken(),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)),
		Expiry:    jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// JWKS returns the gateway's public keys (those of every private_key_jwt source, once per kid) as a JSON Web Key
// Set, to be served without authentication at /.well-known/jwks.json.
func (c *Client) JWKS() ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	seen := map[string]bool{}
	ids := make([]string, 0, len(c.sources))
	for id := range c.sources {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := c.sources[id]
		if s.Method != MethodPrivateKeyJWT || seen[s.KeyID] {
			continue
		}
		seen[s.KeyID] = true
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: publicKey(s.Key), KeyID: s.KeyID, Algorithm: s.Alg, Use: "sig"})
	}
	return json.Marshal(set)
}

func publicKey(k crypto.Signer) crypto.PublicKey { return k.Public() }
