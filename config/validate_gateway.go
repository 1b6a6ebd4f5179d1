package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Bounds of the per-client API rate limit.
const (
	maxCallerRequestsPerSec = 10000
	maxCallerBurst          = 10000
)

// The checks of the sections `secondlook serve` reads: server, redis, keys, callers and assembly.

// aes256KeyBytes is the key size of the token sealer (package seal).
const aes256KeyBytes = 32

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)

func (v *validator) server(s *Server) {
	v.hostPort("server.addr", s.Addr, 0)
	if s.MetricsAddr != "" {
		v.hostPort("server.metrics_addr", s.MetricsAddr, 0)
	}
	if s.PublicURL != "" {
		v.httpURL("server.public_url", s.PublicURL, urlRules{userInfo: userInfoForbidden, https: httpsUnlessLoopback})
	}
	if n, err := ParseSize(s.BodyLimit); err != nil {
		v.add("server.body_limit", "%v", err)
	} else if n < minBodyLimit || n > maxBodyLimit {
		v.add("server.body_limit", "must be between 1K and 64M; got %q", s.BodyLimit)
	}
	v.durationRange("server.request_timeout", s.RequestTimeout, minServerTimeout, maxServerTimeout)
	v.durationRange("server.read_header_timeout", s.ReadHeaderTimeout, minServerTimeout, maxReadHeaderTimeout)
	v.durationRange("server.shutdown_timeout", s.ShutdownTimeout, minServerTimeout, maxServerTimeout)
	for i, o := range s.CORSOrigins {
		p := fmt.Sprintf("server.cors_origins[%d]", i)
		if j := slices.IndexFunc(s.CORSOrigins[:i], func(e string) bool { return strings.EqualFold(e, o) }); j >= 0 {
			v.add(p, "duplicates server.cors_origins[%d]", j)
			continue
		}
		v.origin(p, o)
	}
}

// origin checks a CORS origin. It must be written exactly as browsers send it in the Origin header, or it would
// silently never match.
func (v *validator) origin(path, raw string) {
	if raw == "*" {
		v.add(path, `must be an origin; "*" is not allowed, list each origin`)
		return
	}
	u := v.httpURL(path, raw, urlRules{userInfo: userInfoForbidden, https: httpsUnlessLoopback})
	if u != nil && (u.Path != "" || u.RawPath != "") {
		v.add(path, "%s", originSyntax)
	}
}

// hostPort checks a host:port address with a numeric port of at least minPort. An empty host (all interfaces) is
// accepted only when minPort is 0, that is, for a listen address.
func (v *validator) hostPort(path, addr string, minPort int) {
	if addr == "" {
		v.add(path, "is required")
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(path, "must be host:port; got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < minPort || n > 65535 {
		v.add(path, "must have a port number between %d and 65535; got %q", minPort, addr)
	}
	switch {
	case host == "" && minPort == 0:
	case host == "":
		v.add(path, "must have a host; got %q", addr)
	case !validHost(host):
		v.add(path, "must have an IP address or host name as its host; got %q", addr)
	}
}

func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return hostnameRE.MatchString(host)
}

// redis checks the Redis section. Messages never quote the URL, which may carry a password.
func (v *validator) redis(r *Redis) {
	v.redisURL("redis.url", r.URL)
	for i, a := range r.ClusterAddrs {
		p := fmt.Sprintf("redis.cluster_addrs[%d]", i)
		if j := slices.Index(r.ClusterAddrs[:i], a); j >= 0 {
			v.add(p, "duplicates redis.cluster_addrs[%d]", j)
			continue
		}
		v.hostPort(p, a, 1)
	}
	v.secretRef("redis.password", r.Password)
	switch {
	case r.Prefix == "":
		v.add("redis.prefix", "is required")
	case strings.ContainsAny(r.Prefix, "{}"):
		v.add("redis.prefix", `must not contain "{" or "}", which delimit Redis Cluster hash tags; got %q`, r.Prefix)
	case strings.ContainsFunc(r.Prefix, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }):
		v.add("redis.prefix", "must not contain whitespace or control characters; got %q", r.Prefix)
	case len(r.Prefix) > maxRedisPrefixLen:
		v.add("redis.prefix", "must be at most %d bytes; got %d", maxRedisPrefixLen, len(r.Prefix))
	}
}

func (v *validator) redisURL(path, raw string) {
	if raw == "" {
		v.add(path, "is required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		v.add(path, "is not a valid URL")
		return
	}
	if (u.Scheme != "redis" && u.Scheme != "rediss") || u.Opaque != "" || u.Host == "" {
		v.add(path, "must be a redis:// or rediss:// URL with a host")
		return
	}
	if _, ok := u.User.Password(); ok {
		v.add(path, "must not contain a password; refer to it with redis.password")
	}
	if p := strings.TrimPrefix(u.Path, "/"); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 0 {
			v.add(path, "must have a database number as its path, such as /0")
		}
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		v.add(path, "must not have a fragment")
	}
}

func (v *validator) keys(k *Keys) {
	tokenIDs := make([]string, len(k.TokenEncryption))
	for i, key := range k.TokenEncryption {
		tokenIDs[i] = key.ID
	}
	labels := entryLabels("keys.token_encryption", tokenIDs, sourceIDRE)
	for i, key := range k.TokenEncryption {
		v.duplicateID(labels, tokenIDs, i)
		v.symmetricKey(labels[i], key)
	}
	v.currentKey("keys.token_encryption_current", k.TokenEncryptionCurrent, "keys.token_encryption", tokenIDs)

	signingIDs := make([]string, len(k.Signing))
	for i, key := range k.Signing {
		signingIDs[i] = key.ID
	}
	labels = entryLabels("keys.signing", signingIDs, sourceIDRE)
	for i, key := range k.Signing {
		v.duplicateID(labels, signingIDs, i)
		v.id(labels[i]+".id", key.ID, sourceIDRE)
		v.requiredSecretRef(labels[i]+".private_key", key.PrivateKey)
	}
	v.currentKey("keys.signing_current", k.SigningCurrent, "keys.signing", signingIDs)

	if k.Deid != (SymmetricKey{}) {
		v.symmetricKey("keys.deid", k.Deid)
	}
	v.secretRef("keys.csrf", k.CSRF)
}

// duplicateID reports the i'th entry of a keyed list if an earlier entry has the same id.
func (v *validator) duplicateID(labels, ids []string, i int) {
	if first := slices.Index(ids[:i], ids[i]); first >= 0 && ids[i] != "" {
		v.add(labels[i]+".id", "duplicates the id of %s", labels[first])
	}
}

func (v *validator) symmetricKey(label string, k SymmetricKey) {
	v.id(label+".id", k.ID, sourceIDRE)
	v.requiredSecretRef(label+".secret", k.Secret)
}

func (v *validator) requiredSecretRef(path string, r SecretRef) {
	if r == "" {
		v.add(path, "is required")
		return
	}
	v.secretRef(path, r)
}

// currentKey checks that current names one of ids, the keys of the list at listPath. It may be empty only when
// the list holds at most one key (ApplyDefaults names the only one).
func (v *validator) currentKey(path, current, listPath string, ids []string) {
	switch {
	case current == "" && len(ids) > 1:
		v.add(path, "is required when %s lists more than one key", listPath)
	case current != "" && !slices.Contains(ids, current):
		v.add(path, "must be the id of a key in %s; got %q", listPath, current)
	}
}

func (v *validator) callers(c *Callers) {
	v.rateLimit("callers.rate_limit", c.RateLimit, maxCallerRequestsPerSec, maxCallerBurst)
	issuerIDs := make([]string, len(c.Issuers))
	var clientIDs []string
	for i, is := range c.Issuers {
		issuerIDs[i] = is.ID
		for _, cl := range is.Clients {
			clientIDs = append(clientIDs, cl.ID)
		}
	}
	labels := entryLabels("callers.issuers", issuerIDs, sourceIDRE)
	// Clients are named by id only when it is valid and unique across all issuers.
	count := make(map[string]int, len(clientIDs))
	for _, id := range clientIDs {
		count[id]++
	}
	clientLabels := make([]string, 0, len(clientIDs))
	for i, is := range c.Issuers {
		for j, cl := range is.Clients {
			if clientIDRE.MatchString(cl.ID) && count[cl.ID] == 1 {
				clientLabels = append(clientLabels, labels[i]+".clients["+cl.ID+"]")
			} else {
				clientLabels = append(clientLabels, labels[i]+".clients["+strconv.Itoa(j)+"]")
			}
		}
	}

	n := 0
	for i := range c.Issuers {
		is := &c.Issuers[i]
		p := func(key string) string { return labels[i] + "." + key }
		v.duplicateID(labels, issuerIDs, i)
		v.id(p("id"), is.ID, sourceIDRE)
		if v.httpURL(p("url"), is.URL, urlRules{userInfo: userInfoForbidden, https: httpsUnlessLoopback}) != nil {
			// The caller package matches issuers by URL without trailing slashes.
			key := strings.TrimRight(is.URL, "/")
			if j := slices.IndexFunc(c.Issuers[:i], func(o Issuer) bool { return strings.TrimRight(o.URL, "/") == key }); j >= 0 {
				v.add(p("url"), "duplicates the url of %s", labels[j])
			}
		}
		switch {
		case strings.TrimSpace(is.Audience) == "":
			v.add(p("audience"), "is required")
		case len(is.Audience) > maxAudienceLen || strings.ContainsFunc(is.Audience, unicode.IsControl):
			v.add(p("audience"), "must be at most %d bytes without control characters", maxAudienceLen)
		}
		if len(is.Clients) == 0 {
			v.add(p("clients"), "must list at least one client")
		}
		for j := range is.Clients {
			cl := &is.Clients[j]
			label := clientLabels[n+j]
			if first := slices.Index(clientIDs[:n+j], cl.ID); first >= 0 && cl.ID != "" {
				v.add(label+".id", "duplicates the id of %s", clientLabels[first])
			}
			v.id(label+".id", cl.ID, clientIDRE)
			v.displayName(label+".name", cl.Name)
			v.oneOf(label+".kind", cl.Kind, CallerKindEHR, CallerKindProvider)
		}
		n += len(is.Clients)
	}
}

func (v *validator) assembly(a *Assembly) {
	v.intRange("assembly.workers", a.WorkerCount(), 0, maxAssemblyWorkers)
	v.intRange("assembly.max_attempts", a.MaxAttempts, 1, maxAssemblyAttempts)
	v.durationRange("assembly.base_delay", a.BaseDelay, minAssemblyBaseDelay, maxAssemblyBaseDelay)
	v.durationRange("assembly.visibility", a.Visibility, minAssemblyVisibility, maxAssemblyVisibility)
}

// serve adds what `secondlook serve` needs beyond Validate, reading every well-formed secret reference it will use.
// A reference Validate already reported as malformed is not read again.
func (v *validator) serve(c *Config) {
	const missing = "is required to serve"
	if c.Server.PublicURL == "" {
		v.add("server.public_url", missing)
	}
	if c.Redis.Password != "" && c.Redis.Password.wellFormed() {
		if _, err := c.Redis.Password.Resolve(); err != nil {
			v.add("redis.password", "%v", err)
		}
	}

	k := &c.Keys
	if len(k.TokenEncryption) == 0 {
		v.add("keys.token_encryption", "must list at least one key to serve")
	}
	ids := make([]string, len(k.TokenEncryption))
	for i, key := range k.TokenEncryption {
		ids[i] = key.ID
	}
	labels := entryLabels("keys.token_encryption", ids, sourceIDRE)
	for i, key := range k.TokenEncryption {
		// Tokens are sealed with AES-256, whose key is exactly 32 bytes.
		if b := v.material(labels[i]+".secret", key); b != nil && len(b) != aes256KeyBytes {
			v.add(labels[i]+".secret", "secret %s decodes to %d bytes; AES-256 needs exactly %d", key.Secret, len(b), aes256KeyBytes)
		}
	}

	if len(k.Signing) == 0 {
		v.add("keys.signing", "must list at least one key to serve")
	}
	ids = make([]string, len(k.Signing))
	for i, key := range k.Signing {
		ids[i] = key.ID
	}
	labels = entryLabels("keys.signing", ids, sourceIDRE)
	for i, key := range k.Signing {
		if key.PrivateKey.wellFormed() {
			if _, err := key.Signer(); err != nil {
				v.add(labels[i]+".private_key", "%v", err)
			}
		}
	}

	if k.Deid == (SymmetricKey{}) {
		v.add("keys.deid", missing)
	} else {
		v.material("keys.deid.secret", k.Deid)
	}

	switch {
	case k.CSRF == "":
		v.add("keys.csrf", missing)
	case k.CSRF.wellFormed():
		if b, err := k.CSRF.Resolve(); err != nil {
			v.add("keys.csrf", "%v", err)
		} else if len(b) < minSymmetricKeyBytes {
			v.add("keys.csrf", "secret %s is %d bytes; want at least %d", k.CSRF, len(b), minSymmetricKeyBytes)
		}
	}

	if len(c.Callers.Issuers) == 0 {
		v.add("callers.issuers", "must list at least one issuer to serve")
	}
	for _, kind := range []string{CallerKindEHR, CallerKindProvider} {
		found := slices.ContainsFunc(c.Callers.Issuers, func(is Issuer) bool {
			return slices.ContainsFunc(is.Clients, func(cl CallerClient) bool { return cl.Kind == kind })
		})
		if !found {
			v.add("callers.issuers", "must register at least one client of kind %s to serve", kind)
		}
	}

	if len(c.Sources) == 0 {
		v.add("sources", "must list at least one source to serve")
	}
	labels = sourceLabels(c.Sources)
	for i := range c.Sources {
		v.sourceSecrets(labels[i]+".auth", &c.Sources[i].Auth)
	}
	v.tracingSecrets(&c.Tracing)
}

// material reports a symmetric key whose well-formed secret cannot be read or is not at least 32 bytes of base64,
// and otherwise returns the key.
func (v *validator) material(path string, k SymmetricKey) []byte {
	if !k.Secret.wellFormed() {
		return nil
	}
	b, err := k.material()
	if err != nil {
		v.add(path, "%v", err)
		return nil
	}
	return b
}

// sourceSecrets reads the credentials a source's auth method uses.
func (v *validator) sourceSecrets(prefix string, a *Auth) {
	switch a.Method {
	case AuthClientSecretBasic:
		if a.ClientSecret.wellFormed() {
			if _, err := a.ClientSecret.Resolve(); err != nil {
				v.add(prefix+".client_secret", "%v", err)
			}
		}
	case AuthPrivateKeyJWT:
		if !a.PrivateKey.wellFormed() {
			return
		}
		raw, err := a.PrivateKey.Resolve()
		if err != nil {
			v.add(prefix+".private_key", "%v", err)
			return
		}
		key, err := parsePrivateKeyPEM(raw)
		if err != nil {
			v.add(prefix+".private_key", "private key %s %v", a.PrivateKey, err)
			return
		}
		if err := keySuitsAlg(key.Public(), a.SigningAlg); err != nil {
			v.add(prefix+".private_key", "private key %s %v", a.PrivateKey, err)
		}
	}
}

// keySuitsAlg checks a client assertion key against its signing_alg, as the auth package will.
func keySuitsAlg(pub any, alg string) error {
	switch alg {
	case AlgRS384:
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return errors.New("is not an RSA key, which signing_alg RS384 needs")
		}
	case AlgES384:
		if ec, ok := pub.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P384() {
			return errors.New("is not an ECDSA P-384 key, which signing_alg ES384 needs")
		}
	}
	return nil
}
