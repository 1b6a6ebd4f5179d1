package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Tests of the sections `secondlook serve` reads: server, redis, keys, consent, callers and assembly.

func TestGatewayDefaults(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    func(c *Config) // applied to wantDefaults()
	}{
		{name: "empty file", content: "", want: func(*Config) {}},
		{name: "empty sections", content: "server: {}\nredis: {}\nkeys: {}\nconsent: {}\ncallers: {}\nassembly: {}\n",
			want: func(*Config) {}},
		{
			name:    "public_url trailing slashes trimmed",
			content: "server: {public_url: \"https://gw.example.org/sl//\"}\n",
			want:    func(c *Config) { c.Server.PublicURL = "https://gw.example.org/sl" },
		},
		{
			name:    "bare origin public_url",
			content: "server: {public_url: \"https://gw.example.org/\"}\n",
			want:    func(c *Config) { c.Server.PublicURL = "https://gw.example.org" },
		},
		{
			name: "the only key becomes current",
			content: `keys:
  token_encryption: [{id: t1, secret: "env:T1"}]
  signing: [{id: s1, private_key: "file:/s1.pem"}]
`,
			want: func(c *Config) {
				c.Keys.TokenEncryption = []SymmetricKey{{ID: "t1", Secret: "env:T1"}}
				c.Keys.TokenEncryptionCurrent = "t1"
				c.Keys.Signing = []SigningKey{{ID: "s1", PrivateKey: "file:/s1.pem"}}
				c.Keys.SigningCurrent = "s1"
			},
		},
		{
			name: "an explicit current key is kept",
			content: `keys:
  token_encryption: [{id: t1, secret: "env:T1"}, {id: t2, secret: "env:T2"}]
  token_encryption_current: t1
`,
			want: func(c *Config) {
				c.Keys.TokenEncryption = []SymmetricKey{{ID: "t1", Secret: "env:T1"}, {ID: "t2", Secret: "env:T2"}}
				c.Keys.TokenEncryptionCurrent = "t1"
			},
		},
		{
			name:    "cluster mode keeps the url default",
			content: "redis: {cluster_addrs: [\"r1:6379\", \"r2:6379\"]}\n",
			want:    func(c *Config) { c.Redis.ClusterAddrs = []string{"r1:6379", "r2:6379"} },
		},
		{
			name: "issuer url is not normalised",
			content: `callers:
  issuers:
    - id: idp
      url: https://idp.example.org/
      audience: gw
      clients: [{id: c1, name: C1, kind: ehr}]
`,
			want: func(c *Config) {
				c.Callers.Issuers = []Issuer{{ID: "idp", URL: "https://idp.example.org/", Audience: "gw",
					Clients: []CallerClient{{ID: "c1", Name: "C1", Kind: "ehr"}}}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(writeConfig(t, tt.content), nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := wantDefaults()
			tt.want(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyDefaultsLeavesCurrentOfSeveralKeysEmpty(t *testing.T) {
	c := &Config{Keys: Keys{
		TokenEncryption: []SymmetricKey{{ID: "a", Secret: "env:A"}, {ID: "b", Secret: "env:B"}},
		Signing:         []SigningKey{{ID: "a", PrivateKey: "env:A"}, {ID: "b", PrivateKey: "env:B"}},
	}}
	c.ApplyDefaults()
	want := []Problem{
		{"keys.token_encryption_current", "is required when keys.token_encryption lists more than one key"},
		{"keys.signing_current", "is required when keys.signing lists more than one key"},
	}
	if diff := cmp.Diff(want, problemsOf(t, c.Validate())); diff != "" {
		t.Errorf("Validate problems mismatch (-want +got):\n%s", diff)
	}
}

func TestValidateGateway(t *testing.T) {
	const (
		tok = "keys.token_encryption"
		sig = "keys.signing"
		smi = "callers.issuers[st-mary-idp]."
		onc = "callers.issuers[onconet]."
	)
	refSyntaxMsg := `must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`
	httpsOnly := "must use https unless the host is loopback (127.0.0.0/8, ::1, localhost)"
	origin := "must be an origin, scheme://host[:port], without path, query or fragment"
	idMsg := func(id string) string { return fmt.Sprintf("must match ^[a-z0-9][a-z0-9-]{0,62}$; got %q", id) }
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []Problem
	}{
		{name: "valid example", mutate: func(*Config) {}},
		{name: "defaults are valid", mutate: func(c *Config) { *c = *withSources(wantDefaults(), c.Sources...) }},

		// server.addr
		{name: "addr all interfaces", mutate: func(c *Config) { c.Server.Addr = ":8080" }},
		{name: "addr free port", mutate: func(c *Config) { c.Server.Addr = "127.0.0.1:0" }},
		{name: "addr IPv6", mutate: func(c *Config) { c.Server.Addr = "[::1]:8080" }},
		{name: "addr host name", mutate: func(c *Config) { c.Server.Addr = "gw.internal:8080" }},
		{name: "addr empty", mutate: func(c *Config) { c.Server.Addr = "" },
			want: []Problem{{"server.addr", "is required"}}},
		{name: "addr without port", mutate: func(c *Config) { c.Server.Addr = "localhost" },
			want: []Problem{{"server.addr", `must be host:port; got "localhost"`}}},
		{name: "addr URL", mutate: func(c *Config) { c.Server.Addr = "http://localhost:8080" },
			want: []Problem{{"server.addr", `must be host:port; got "http://localhost:8080"`}}},
		{name: "addr port too big", mutate: func(c *Config) { c.Server.Addr = "127.0.0.1:65536" },
			want: []Problem{{"server.addr", `must have a port number between 0 and 65535; got "127.0.0.1:65536"`}}},
		{name: "addr named port", mutate: func(c *Config) { c.Server.Addr = "127.0.0.1:http" },
			want: []Problem{{"server.addr", `must have a port number between 0 and 65535; got "127.0.0.1:http"`}}},
		{name: "addr bad host", mutate: func(c *Config) { c.Server.Addr = "gw_1!:80" },
			want: []Problem{{"server.addr", `must have an IP address or host name as its host; got "gw_1!:80"`}}},

		// server.public_url
		{name: "public_url optional for Validate", mutate: func(c *Config) { c.Server.PublicURL = "" }},
		{name: "public_url http loopback", mutate: func(c *Config) { c.Server.PublicURL = "http://127.0.0.1:8080" }},
		{name: "public_url http localhost", mutate: func(c *Config) { c.Server.PublicURL = "http://localhost:8080/sl" }},
		{name: "public_url http remote", mutate: func(c *Config) { c.Server.PublicURL = "http://gw.example.org" },
			want: []Problem{{"server.public_url", httpsOnly}}},
		{name: "public_url relative", mutate: func(c *Config) { c.Server.PublicURL = "gw.example.org/sl" },
			want: []Problem{{"server.public_url", "must be an absolute http or https URL with a host"}}},
		{name: "public_url user info", mutate: func(c *Config) { c.Server.PublicURL = "https://u:p@gw.example.org" },
			want: []Problem{{"server.public_url", "must not contain user information"}}},
		{name: "public_url query and fragment", mutate: func(c *Config) { c.Server.PublicURL = "https://gw.example.org/?a=1#b" },
			want: []Problem{{"server.public_url", "must not have a query"}, {"server.public_url", "must not have a fragment"}}},

		// server.body_limit
		{name: "body_limit 1K", mutate: func(c *Config) { c.Server.BodyLimit = "1K" }},
		{name: "body_limit 64M", mutate: func(c *Config) { c.Server.BodyLimit = "64M" }},
		{name: "body_limit bytes", mutate: func(c *Config) { c.Server.BodyLimit = "500000" }},
		{name: "body_limit binary", mutate: func(c *Config) { c.Server.BodyLimit = "8Mi" }},
		{name: "body_limit under 1K", mutate: func(c *Config) { c.Server.BodyLimit = "999" },
			want: []Problem{{"server.body_limit", `must be between 1K and 64M; got "999"`}}},
		{name: "body_limit over 64M", mutate: func(c *Config) { c.Server.BodyLimit = "64Mi" },
			want: []Problem{{"server.body_limit", `must be between 1K and 64M; got "64Mi"`}}},
		{name: "body_limit gigabytes", mutate: func(c *Config) { c.Server.BodyLimit = "1G" },
			want: []Problem{{"server.body_limit", `invalid size "1G": want a whole number with an optional unit K, M, Ki or Mi, such as "1M"`}}},
		{name: "body_limit empty", mutate: func(c *Config) { c.Server.BodyLimit = "" },
			want: []Problem{{"server.body_limit", `invalid size "": want a whole number with an optional unit K, M, Ki or Mi, such as "1M"`}}},

		// server timeouts
		{name: "request_timeout 1s", mutate: func(c *Config) { c.Server.RequestTimeout = Duration(time.Second) }},
		{name: "request_timeout 5m", mutate: func(c *Config) { c.Server.RequestTimeout = Duration(5 * time.Minute) }},
		{name: "request_timeout under 1s", mutate: func(c *Config) { c.Server.RequestTimeout = Duration(500 * time.Millisecond) },
			want: []Problem{{"server.request_timeout", "must be between 1s and 5m0s; got 500ms"}}},
		{name: "request_timeout over 5m", mutate: func(c *Config) { c.Server.RequestTimeout = Duration(6 * time.Minute) },
			want: []Problem{{"server.request_timeout", "must be between 1s and 5m0s; got 6m0s"}}},
		{name: "read_header_timeout over 1m", mutate: func(c *Config) { c.Server.ReadHeaderTimeout = Duration(2 * time.Minute) },
			want: []Problem{{"server.read_header_timeout", "must be between 1s and 1m0s; got 2m0s"}}},
		{name: "read_header_timeout zero", mutate: func(c *Config) { c.Server.ReadHeaderTimeout = 0 },
			want: []Problem{{"server.read_header_timeout", "must be between 1s and 1m0s; got 0s"}}},
		{name: "shutdown_timeout over 5m", mutate: func(c *Config) { c.Server.ShutdownTimeout = Duration(10 * time.Minute) },
			want: []Problem{{"server.shutdown_timeout", "must be between 1s and 5m0s; got 10m0s"}}},

		// server.cors_origins
		{name: "cors none", mutate: func(c *Config) { c.Server.CORSOrigins = nil }},
		{name: "cors http loopback", mutate: func(c *Config) { c.Server.CORSOrigins = []string{"http://localhost:3000"} }},
		{name: "cors wildcard", mutate: func(c *Config) { c.Server.CORSOrigins = []string{"*"} },
			want: []Problem{{"server.cors_origins[0]", `must be an origin; "*" is not allowed, list each origin`}}},
		{name: "cors trailing slash", mutate: func(c *Config) { c.Server.CORSOrigins[1] = "https://portal.example.org/" },
			want: []Problem{{"server.cors_origins[1]", origin}}},
		{name: "cors path", mutate: func(c *Config) { c.Server.CORSOrigins[0] = "https://ehr.example.org/app" },
			want: []Problem{{"server.cors_origins[0]", origin}}},
		{name: "cors http remote", mutate: func(c *Config) { c.Server.CORSOrigins[0] = "http://ehr.example.org" },
			want: []Problem{{"server.cors_origins[0]", httpsOnly}}},
		{name: "cors not a URL", mutate: func(c *Config) { c.Server.CORSOrigins[0] = "ehr.example.org" },
			want: []Problem{{"server.cors_origins[0]", "must be an absolute http or https URL with a host"}}},
		{name: "cors duplicate differing in case", mutate: func(c *Config) {
			c.Server.CORSOrigins = append(c.Server.CORSOrigins, "https://EHR.stmary.example.org")
		}, want: []Problem{{"server.cors_origins[2]", "duplicates server.cors_origins[0]"}}},

		// redis
		{name: "redis plain url", mutate: func(c *Config) { c.Redis.URL = "redis://localhost" }},
		{name: "redis url empty", mutate: func(c *Config) { c.Redis.URL = "" },
			want: []Problem{{"redis.url", "is required"}}},
		{name: "redis url password", mutate: func(c *Config) { c.Redis.URL = "redis://:hunter2@redis.example.org:6379/0" },
			want: []Problem{{"redis.url", "must not contain a password; refer to it with redis.password"}}},
		{name: "redis url user and password", mutate: func(c *Config) { c.Redis.URL = "rediss://gw:hunter2@redis.example.org" },
			want: []Problem{{"redis.url", "must not contain a password; refer to it with redis.password"}}},
		{name: "redis url scheme", mutate: func(c *Config) { c.Redis.URL = "https://redis.example.org" },
			want: []Problem{{"redis.url", "must be a redis:// or rediss:// URL with a host"}}},
		{name: "redis url without host", mutate: func(c *Config) { c.Redis.URL = "redis:///0" },
			want: []Problem{{"redis.url", "must be a redis:// or rediss:// URL with a host"}}},
		{name: "redis url db", mutate: func(c *Config) { c.Redis.URL = "redis://redis.example.org/main" },
			want: []Problem{{"redis.url", "must have a database number as its path, such as /0"}}},
		{name: "redis cluster", mutate: func(c *Config) { c.Redis.ClusterAddrs = []string{"r1.example.org:6379", "10.0.0.2:6379"} }},
		{name: "redis cluster without port", mutate: func(c *Config) { c.Redis.ClusterAddrs = []string{"r1.example.org"} },
			want: []Problem{{"redis.cluster_addrs[0]", `must be host:port; got "r1.example.org"`}}},
		{name: "redis cluster port 0", mutate: func(c *Config) { c.Redis.ClusterAddrs = []string{"r1:0"} },
			want: []Problem{{"redis.cluster_addrs[0]", `must have a port number between 1 and 65535; got "r1:0"`}}},
		{name: "redis cluster without host", mutate: func(c *Config) { c.Redis.ClusterAddrs = []string{":6379"} },
			want: []Problem{{"redis.cluster_addrs[0]", `must have a host; got ":6379"`}}},
		{name: "redis cluster duplicate", mutate: func(c *Config) { c.Redis.ClusterAddrs = []string{"r1:6379", "r1:6379"} },
			want: []Problem{{"redis.cluster_addrs[1]", "duplicates redis.cluster_addrs[0]"}}},
		{name: "redis password optional", mutate: func(c *Config) { c.Redis.Password = "" }},
		{name: "redis password literal", mutate: func(c *Config) { c.Redis.Password = "hunter2" },
			want: []Problem{{"redis.password", refSyntaxMsg}}},
		{name: "redis prefix hash tag", mutate: func(c *Config) { c.Redis.Prefix = "{sl}:" },
			want: []Problem{{"redis.prefix", `must not contain "{" or "}", which delimit Redis Cluster hash tags; got "{sl}:"`}}},
		{name: "redis prefix space", mutate: func(c *Config) { c.Redis.Prefix = "sl prod:" },
			want: []Problem{{"redis.prefix", `must not contain whitespace or control characters; got "sl prod:"`}}},
		{name: "redis prefix long", mutate: func(c *Config) { c.Redis.Prefix = strings.Repeat("p", 65) },
			want: []Problem{{"redis.prefix", "must be at most 64 bytes; got 65"}}},
		{name: "redis prefix empty", mutate: func(c *Config) { c.Redis.Prefix = "" },
			want: []Problem{{"redis.prefix", "is required"}}},

		// keys
		{name: "token key id duplicate", mutate: func(c *Config) {
			c.Keys.TokenEncryption[1].ID = "tok-2025-06"
			c.Keys.TokenEncryptionCurrent = "tok-2025-06"
		},
			want: []Problem{{tok + "[1].id", "duplicates the id of " + tok + "[0]"}}},
		{name: "token key id invalid", mutate: func(c *Config) { c.Keys.TokenEncryption[0].ID = "Tok_1" },
			want: []Problem{{tok + "[0].id", idMsg("Tok_1")}}},
		{name: "token key id missing", mutate: func(c *Config) { c.Keys.TokenEncryption[0].ID = "" },
			want: []Problem{{tok + "[0].id", "is required"}}},
		{name: "token key secret missing", mutate: func(c *Config) { c.Keys.TokenEncryption[1].Secret = "" },
			want: []Problem{{tok + "[tok-2026-01].secret", "is required"}}},
		{name: "token key secret literal", mutate: func(c *Config) { c.Keys.TokenEncryption[1].Secret = "c2VjcmV0" },
			want: []Problem{{tok + "[tok-2026-01].secret", refSyntaxMsg}}},
		{name: "token current unknown", mutate: func(c *Config) { c.Keys.TokenEncryptionCurrent = "tok-2027" },
			want: []Problem{{tok + "_current", `must be the id of a key in keys.token_encryption; got "tok-2027"`}}},
		{name: "token current missing", mutate: func(c *Config) { c.Keys.TokenEncryptionCurrent = "" },
			want: []Problem{{tok + "_current", "is required when keys.token_encryption lists more than one key"}}},
		{name: "token current without keys", mutate: func(c *Config) { c.Keys.TokenEncryption = nil },
			want: []Problem{{tok + "_current", `must be the id of a key in keys.token_encryption; got "tok-2026-01"`}}},
		{name: "no keys at all is valid", mutate: func(c *Config) { c.Keys = Keys{} }},
		{name: "signing key id duplicate", mutate: func(c *Config) { c.Keys.Signing = append(c.Keys.Signing, c.Keys.Signing[0]) },
			want: []Problem{{sig + "[1].id", "duplicates the id of " + sig + "[0]"}}},
		{name: "signing key missing", mutate: func(c *Config) { c.Keys.Signing[0].PrivateKey = "" },
			want: []Problem{{sig + "[sig-2026-01].private_key", "is required"}}},
		{name: "signing key literal PEM", mutate: func(c *Config) { c.Keys.Signing[0].PrivateKey = "-----BEGIN PRIVATE KEY-----" },
			want: []Problem{{sig + "[sig-2026-01].private_key", refSyntaxMsg}}},
		{name: "signing current unknown", mutate: func(c *Config) { c.Keys.SigningCurrent = "sig-1999" },
			want: []Problem{{sig + "_current", `must be the id of a key in keys.signing; got "sig-1999"`}}},
		{name: "deid unset is valid", mutate: func(c *Config) { c.Keys.Deid = SymmetricKey{} }},
		{name: "deid without id", mutate: func(c *Config) { c.Keys.Deid.ID = "" },
			want: []Problem{{"keys.deid.id", "is required"}}},
		{name: "deid without secret", mutate: func(c *Config) { c.Keys.Deid.Secret = "" },
			want: []Problem{{"keys.deid.secret", "is required"}}},
		{name: "deid bad file reference", mutate: func(c *Config) { c.Keys.Deid.Secret = "file:deid.key" },
			want: []Problem{{"keys.deid.secret", `"file:" must be followed by an absolute path`}}},
		{name: "csrf literal", mutate: func(c *Config) { c.Keys.CSRF = "0123456789abcdef0123456789abcdef" },
			want: []Problem{{"keys.csrf", refSyntaxMsg}}},
		{name: "csrf bad env name", mutate: func(c *Config) { c.Keys.CSRF = "env:1X" },
			want: []Problem{{"keys.csrf", `"env:" must be followed by an environment variable name matching [A-Za-z_][A-Za-z0-9_]*`}}},

		// consent
		{name: "consent 1h", mutate: func(c *Config) { c.Consent.Validity = Duration(time.Hour) }},
		{name: "consent 8760h", mutate: func(c *Config) { c.Consent.Validity = Duration(8760 * time.Hour) }},
		{name: "consent under 1h", mutate: func(c *Config) { c.Consent.Validity = Duration(30 * time.Minute) },
			want: []Problem{{"consent.validity", "must be between 1h0m0s and 8760h0m0s; got 30m0s"}}},
		{name: "consent over a year", mutate: func(c *Config) { c.Consent.Validity = Duration(8761 * time.Hour) },
			want: []Problem{{"consent.validity", "must be between 1h0m0s and 8760h0m0s; got 8761h0m0s"}}},

		// callers
		{name: "no issuers is valid", mutate: func(c *Config) { c.Callers.Issuers = nil }},
		{name: "issuer id invalid", mutate: func(c *Config) { c.Callers.Issuers[0].ID = "St Mary" },
			want: []Problem{{"callers.issuers[0].id", idMsg("St Mary")}}},
		{name: "issuer id duplicate", mutate: func(c *Config) { c.Callers.Issuers[1].ID = "st-mary-idp" },
			want: []Problem{{"callers.issuers[1].id", "duplicates the id of callers.issuers[0]"}}},
		{name: "issuer url missing", mutate: func(c *Config) { c.Callers.Issuers[0].URL = "" },
			want: []Problem{{smi + "url", "is required"}}},
		{name: "issuer url http remote", mutate: func(c *Config) { c.Callers.Issuers[0].URL = "http://login.example.org" },
			want: []Problem{{smi + "url", httpsOnly}}},
		{name: "issuer url http loopback", mutate: func(c *Config) { c.Callers.Issuers[0].URL = "http://127.0.0.1:9000/idp" }},
		{name: "issuer url user info and query", mutate: func(c *Config) { c.Callers.Issuers[0].URL = "https://a:b@login.example.org?x=1" },
			want: []Problem{{smi + "url", "must not contain user information"}, {smi + "url", "must not have a query"}}},
		{name: "issuer url duplicate up to a trailing slash", mutate: func(c *Config) {
			c.Callers.Issuers[1].URL = c.Callers.Issuers[0].URL + "/"
		}, want: []Problem{{onc + "url", "duplicates the url of callers.issuers[st-mary-idp]"}}},
		{name: "issuer audience missing", mutate: func(c *Config) { c.Callers.Issuers[1].Audience = " " },
			want: []Problem{{onc + "audience", "is required"}}},
		{name: "issuer audience control character", mutate: func(c *Config) { c.Callers.Issuers[1].Audience = "gw\n" },
			want: []Problem{{onc + "audience", "must be at most 1024 bytes without control characters"}}},
		{name: "issuer without clients", mutate: func(c *Config) { c.Callers.Issuers[1].Clients = nil },
			want: []Problem{{onc + "clients", "must list at least one client"}}},
		{name: "client id duplicate across issuers", mutate: func(c *Config) { c.Callers.Issuers[1].Clients[0].ID = "ehr-st-mary" },
			want: []Problem{{onc + "clients[0].id", "duplicates the id of " + smi + "clients[0]"}}},
		{name: "client id duplicate within an issuer", mutate: func(c *Config) {
			c.Callers.Issuers[0].Clients = append(c.Callers.Issuers[0].Clients, CallerClient{ID: "ehr-st-mary", Name: "Again", Kind: "ehr"})
		}, want: []Problem{{smi + "clients[1].id", "duplicates the id of " + smi + "clients[0]"}}},
		{name: "client id mixed case and underscore", mutate: func(c *Config) { c.Callers.Issuers[0].Clients[0].ID = "EHR_st_Mary" }},
		{name: "client id invalid", mutate: func(c *Config) { c.Callers.Issuers[0].Clients[0].ID = "ehr st mary" },
			want: []Problem{{smi + "clients[0].id", `must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$; got "ehr st mary"`}}},
		{name: "client id missing", mutate: func(c *Config) { c.Callers.Issuers[0].Clients[0].ID = "" },
			want: []Problem{{smi + "clients[0].id", "is required"}}},
		{name: "client name missing", mutate: func(c *Config) { c.Callers.Issuers[0].Clients[0].Name = "" },
			want: []Problem{{smi + "clients[ehr-st-mary].name", "is required"}}},
		{name: "client name too long", mutate: func(c *Config) { c.Callers.Issuers[0].Clients[0].Name = strings.Repeat("n", 201) },
			want: []Problem{{smi + "clients[ehr-st-mary].name", "must be at most 200 characters; got 201"}}},
		{name: "client kind unknown", mutate: func(c *Config) { c.Callers.Issuers[1].Clients[0].Kind = "admin" },
			want: []Problem{{onc + "clients[0oa1b2C3onco].kind", `must be one of ehr, provider; got "admin"`}}},
		{name: "client kind missing", mutate: func(c *Config) { c.Callers.Issuers[1].Clients[0].Kind = "" },
			want: []Problem{{onc + "clients[0oa1b2C3onco].kind", "is required; want one of ehr, provider"}}},

		// assembly
		{name: "workers 64", mutate: func(c *Config) { c.Assembly.Workers = new(64) }},
		{name: "workers 0: an API-only replica", mutate: func(c *Config) { c.Assembly.Workers = new(0) }},
		{name: "workers -1", mutate: func(c *Config) { c.Assembly.Workers = new(-1) },
			want: []Problem{{"assembly.workers", "must be between 0 and 64; got -1"}}},
		{name: "workers 65", mutate: func(c *Config) { c.Assembly.Workers = new(65) },
			want: []Problem{{"assembly.workers", "must be between 0 and 64; got 65"}}},
		{name: "max_attempts 20", mutate: func(c *Config) { c.Assembly.MaxAttempts = 20 }},
		{name: "max_attempts 21", mutate: func(c *Config) { c.Assembly.MaxAttempts = 21 },
			want: []Problem{{"assembly.max_attempts", "must be between 1 and 20; got 21"}}},
		{name: "max_attempts 0", mutate: func(c *Config) { c.Assembly.MaxAttempts = 0 },
			want: []Problem{{"assembly.max_attempts", "must be between 1 and 20; got 0"}}},
		{name: "base_delay under 100ms", mutate: func(c *Config) { c.Assembly.BaseDelay = Duration(50 * time.Millisecond) },
			want: []Problem{{"assembly.base_delay", "must be between 100ms and 10m0s; got 50ms"}}},
		{name: "base_delay over 10m", mutate: func(c *Config) { c.Assembly.BaseDelay = Duration(11 * time.Minute) },
			want: []Problem{{"assembly.base_delay", "must be between 100ms and 10m0s; got 11m0s"}}},
		{name: "visibility 10s", mutate: func(c *Config) { c.Assembly.Visibility = Duration(10 * time.Second) }},
		{name: "visibility under 10s", mutate: func(c *Config) { c.Assembly.Visibility = Duration(5 * time.Second) },
			want: []Problem{{"assembly.visibility", "must be between 10s and 1h0m0s; got 5s"}}},
		{name: "visibility over 1h", mutate: func(c *Config) { c.Assembly.Visibility = Duration(2 * time.Hour) },
			want: []Problem{{"assembly.visibility", "must be between 10s and 1h0m0s; got 2h0m0s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := wantExample()
			tt.mutate(cfg)
			if diff := cmp.Diff(tt.want, problemsOf(t, cfg.Validate())); diff != "" {
				t.Errorf("Validate problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateGatewayNeverShowsSecrets(t *testing.T) {
	const password = "r3dis-pa55"
	c := wantExample()
	c.Redis.URL = "redis://gw:" + password + "@redis.example.org/0"
	c.Server.PublicURL = "https://gw:" + password + "@gw.example.org"
	c.Callers.Issuers[0].URL = "https://gw:" + password + "@login.example.org"
	c.Server.CORSOrigins[0] = "https://gw:" + password + "@ehr.example.org"
	c.Keys.CSRF = password
	c.Keys.Deid.Secret = password
	err := c.Validate()
	if got := len(problemsOf(t, err)); got != 6 {
		t.Fatalf("Validate reported %d problems, want 6:\n%v", got, err)
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("the validation error shows a secret:\n%v", err)
	}
}

// keyFiles writes PEM keys of each kind into a temporary directory.
type keyFiles struct {
	dir string
	t   *testing.T
}

func (k keyFiles) write(name string, data []byte) string {
	k.t.Helper()
	path := filepath.Join(k.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		k.t.Fatal(err)
	}
	return path
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func sec1(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits) //nolint:gosec // Small keys are generated to test their rejection.
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// serveEnv sets the secrets testdata/example.yaml refers to and returns the overrides that point its file
// references at temporary files, so that the example passes ValidateForServe.
func serveEnv(t *testing.T) (environ []string, files keyFiles) {
	t.Helper()
	files = keyFiles{dir: t.TempDir(), t: t}
	t.Setenv("REDIS_PASSWORD", "redis-password")
	t.Setenv("SL_TOKEN_KEY_2025_06", b64(32))
	t.Setenv("SL_DEID_KEY", base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("d", 48))))
	t.Setenv("SL_CSRF_SECRET", strings.Repeat("c", 32))
	t.Setenv("ST_MARY_CLIENT_SECRET", "st-mary-secret")
	t.Setenv("SL_OTEL_AUTHORIZATION", "Basic b3RlbDpjb2xsZWN0b3I=")
	token := files.write("token-2026-01", []byte(b64(32)+"\n"))
	signing := files.write("signing.pem", pkcs8(t, ecKey(t, elliptic.P256())))
	onHIE := files.write("on-hie.pem", sec1(t, ecKey(t, elliptic.P384())))
	return []string{
		"SECONDLOOK_KEYS_TOKEN_ENCRYPTION_TOK_2026_01_SECRET=file:" + token,
		"SECONDLOOK_KEYS_SIGNING_SIG_2026_01_PRIVATE_KEY=file:" + signing,
		"SECONDLOOK_SOURCES_ON_HIE_AUTH_PRIVATE_KEY=file:" + onHIE,
	}, files
}

func TestExamplePassesValidateForServe(t *testing.T) {
	environ, _ := serveEnv(t)
	cfg, err := Load(examplePath, environ)
	if err != nil {
		t.Fatalf("Load(%q): %v", examplePath, err)
	}
	if err := cfg.ValidateForServe(); err != nil {
		t.Errorf("ValidateForServe: %v", err)
	}

	// Without the secrets it must not pass.
	raw, err := Load(examplePath, nil)
	if err != nil {
		t.Fatalf("Load(%q): %v", examplePath, err)
	}
	if err := raw.ValidateForServe(); err == nil {
		t.Error("ValidateForServe passed with secret files that do not exist")
	}
}

func TestValidateForServeReportsEverythingMissing(t *testing.T) {
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate of the empty config: %v", err)
	}
	want := []Problem{
		{"server.public_url", "is required to serve"},
		{"keys.token_encryption", "must list at least one key to serve"},
		{"keys.signing", "must list at least one key to serve"},
		{"keys.deid", "is required to serve"},
		{"keys.csrf", "is required to serve"},
		{"callers.issuers", "must list at least one issuer to serve"},
		{"callers.issuers", "must register at least one client of kind ehr to serve"},
		{"callers.issuers", "must register at least one client of kind provider to serve"},
		{"sources", "must list at least one source to serve"},
	}
	err = cfg.ValidateForServe()
	got := problemsOf(t, err)
	if len(got) != 9 {
		t.Errorf("ValidateForServe reported %d problems, want 9:\n%v", len(got), err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ValidateForServe problems mismatch (-want +got):\n%s", diff)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "invalid config (9 problems):") {
		t.Errorf("Error() = %q; want it to count 9 problems", err)
	}
}

func TestValidateForServeIncludesValidate(t *testing.T) {
	environ, _ := serveEnv(t)
	cfg, err := Load(examplePath, environ)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cfg.Log.Level = "loud"
	cfg.Assembly.Workers = new(65)
	cfg.Server.PublicURL = ""
	want := []Problem{
		{"log.level", `must be one of debug, info, warn, error; got "loud"`},
		{"assembly.workers", "must be between 0 and 64; got 65"},
		{"server.public_url", "is required to serve"},
	}
	if diff := cmp.Diff(want, problemsOf(t, cfg.ValidateForServe())); diff != "" {
		t.Errorf("ValidateForServe problems mismatch (-want +got):\n%s", diff)
	}
}

func TestValidateForServeSecrets(t *testing.T) {
	const secretValue = "c2hvcnQtc2VjcmV0LXZhbHVl" // base64 of "short-secret-value", 18 bytes
	tests := []struct {
		name   string
		mutate func(t *testing.T, c *Config, files keyFiles)
		want   []Problem
	}{
		{name: "all secrets present", mutate: func(*testing.T, *Config, keyFiles) {}},
		{name: "token key unset", mutate: func(t *testing.T, _ *Config, _ keyFiles) { unsetenv(t, "SL_TOKEN_KEY_2025_06") },
			want: []Problem{{"keys.token_encryption[tok-2025-06].secret",
				"resolve secret env:SL_TOKEN_KEY_2025_06: environment variable is not set"}}},
		{name: "token key short", mutate: func(t *testing.T, _ *Config, _ keyFiles) { t.Setenv("SL_TOKEN_KEY_2025_06", secretValue) },
			want: []Problem{{"keys.token_encryption[tok-2025-06].secret",
				"secret env:SL_TOKEN_KEY_2025_06 decodes to 18 bytes; want at least 32"}}},
		{name: "token key longer than AES-256", mutate: func(t *testing.T, _ *Config, _ keyFiles) { t.Setenv("SL_TOKEN_KEY_2025_06", b64(48)) },
			want: []Problem{{"keys.token_encryption[tok-2025-06].secret",
				"secret env:SL_TOKEN_KEY_2025_06 decodes to 48 bytes; AES-256 needs exactly 32"}}},
		{name: "deid key may be longer", mutate: func(t *testing.T, _ *Config, _ keyFiles) { t.Setenv("SL_DEID_KEY", b64(64)) }},
		{name: "token key not base64", mutate: func(t *testing.T, _ *Config, _ keyFiles) {
			t.Setenv("SL_TOKEN_KEY_2025_06", "not*base64*"+secretValue)
		}, want: []Problem{{"keys.token_encryption[tok-2025-06].secret", "secret env:SL_TOKEN_KEY_2025_06 is not base64"}}},
		{name: "signing key not PEM", mutate: func(_ *testing.T, c *Config, f keyFiles) {
			c.Keys.Signing[0].PrivateKey = SecretRef("file:" + f.write("junk.pem", []byte(secretValue)))
		}, want: []Problem{{"keys.signing[sig-2026-01].private_key", "private key file:{dir}/junk.pem is not PEM"}}},
		{name: "signing key small RSA", mutate: func(t *testing.T, c *Config, f keyFiles) {
			c.Keys.Signing[0].PrivateKey = SecretRef("file:" + f.write("rsa1024.pem", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey(t, 1024)))))
		}, want: []Problem{{"keys.signing[sig-2026-01].private_key", "private key file:{dir}/rsa1024.pem is a 1024-bit RSA key; want at least 2048 bits"}}},
		{name: "signing key missing file", mutate: func(_ *testing.T, c *Config, f keyFiles) {
			c.Keys.Signing[0].PrivateKey = SecretRef("file:" + filepath.Join(f.dir, "none.pem"))
		}, want: []Problem{{"keys.signing[sig-2026-01].private_key",
			"resolve secret file:{dir}/none.pem: open {dir}/none.pem: no such file or directory"}}},
		{name: "deid short", mutate: func(t *testing.T, _ *Config, _ keyFiles) { t.Setenv("SL_DEID_KEY", secretValue) },
			want: []Problem{{"keys.deid.secret", "secret env:SL_DEID_KEY decodes to 18 bytes; want at least 32"}}},
		{name: "csrf short", mutate: func(t *testing.T, _ *Config, _ keyFiles) { t.Setenv("SL_CSRF_SECRET", secretValue) },
			want: []Problem{{"keys.csrf", "secret env:SL_CSRF_SECRET is 24 bytes; want at least 32"}}},
		{name: "csrf unset", mutate: func(t *testing.T, _ *Config, _ keyFiles) { unsetenv(t, "SL_CSRF_SECRET") },
			want: []Problem{{"keys.csrf", "resolve secret env:SL_CSRF_SECRET: environment variable is not set"}}},
		{name: "redis password unset", mutate: func(t *testing.T, _ *Config, _ keyFiles) { unsetenv(t, "REDIS_PASSWORD") },
			want: []Problem{{"redis.password", "resolve secret env:REDIS_PASSWORD: environment variable is not set"}}},
		{name: "source client secret empty", mutate: func(t *testing.T, _ *Config, _ keyFiles) { t.Setenv("ST_MARY_CLIENT_SECRET", "") },
			want: []Problem{{"sources[st-mary].auth.client_secret", "resolve secret env:ST_MARY_CLIENT_SECRET: secret is empty"}}},
		{name: "source key of the wrong curve", mutate: func(t *testing.T, c *Config, f keyFiles) {
			c.Sources[1].Auth.PrivateKey = SecretRef("file:" + f.write("p256.pem", pkcs8(t, ecKey(t, elliptic.P256()))))
		}, want: []Problem{{"sources[on-hie].auth.private_key",
			"private key file:{dir}/p256.pem is not an ECDSA P-384 key, which signing_alg ES384 needs"}}},
		{name: "source key not RSA for RS384", mutate: func(_ *testing.T, c *Config, _ keyFiles) { c.Sources[1].Auth.SigningAlg = AlgRS384 },
			want: []Problem{{"sources[on-hie].auth.private_key", "private key {onhie} is not an RSA key, which signing_alg RS384 needs"}}},
		{name: "malformed references are reported once, by Validate", mutate: func(_ *testing.T, c *Config, _ keyFiles) {
			c.Keys.CSRF = secretValue
			c.Keys.Deid.Secret = secretValue
		}, want: []Problem{
			{"keys.deid.secret", `must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`},
			{"keys.csrf", `must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`},
		}},
		{name: "every problem at once", mutate: func(t *testing.T, _ *Config, _ keyFiles) {
			unsetenv(t, "REDIS_PASSWORD")
			t.Setenv("SL_TOKEN_KEY_2025_06", secretValue)
			t.Setenv("SL_DEID_KEY", secretValue)
			t.Setenv("SL_CSRF_SECRET", secretValue)
		}, want: []Problem{
			{"redis.password", "resolve secret env:REDIS_PASSWORD: environment variable is not set"},
			{"keys.token_encryption[tok-2025-06].secret", "secret env:SL_TOKEN_KEY_2025_06 decodes to 18 bytes; want at least 32"},
			{"keys.deid.secret", "secret env:SL_DEID_KEY decodes to 18 bytes; want at least 32"},
			{"keys.csrf", "secret env:SL_CSRF_SECRET is 24 bytes; want at least 32"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			environ, files := serveEnv(t)
			cfg, err := Load(examplePath, environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			onHIE := string(cfg.Sources[1].Auth.PrivateKey)
			tt.mutate(t, cfg, files)
			r := strings.NewReplacer("{dir}", files.dir, "{onhie}", onHIE)
			var want []Problem
			for _, p := range tt.want {
				want = append(want, Problem{p.Path, r.Replace(p.Message)})
			}
			err = cfg.ValidateForServe()
			if diff := cmp.Diff(want, problemsOf(t, err)); diff != "" {
				t.Errorf("ValidateForServe problems mismatch (-want +got):\n%s", diff)
			}
			if err != nil && (strings.Contains(err.Error(), secretValue) || strings.Contains(err.Error(), "short-secret")) {
				t.Errorf("ValidateForServe error shows a secret:\n%v", err)
			}
		})
	}
}

// unsetenv unsets name for the rest of the test, restoring it afterwards.
func unsetenv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // Registers the restore.
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

func TestSymmetricKeyMaterial(t *testing.T) {
	key32 := []byte(strings.Repeat("\xfb\xff", 16)) // Encodes with "+" and "/" in std, "-" and "_" in URL base64.
	key64 := []byte(strings.Repeat("k", 64))
	short := []byte("sixteen-byte-key")
	dir := t.TempDir()
	write := func(name, content string) SecretRef {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return SecretRef("file:" + path)
	}
	t.Setenv("TEST_KEY_STD", base64.StdEncoding.EncodeToString(key32))
	t.Setenv("TEST_KEY_RAW_URL", base64.RawURLEncoding.EncodeToString(key32))
	t.Setenv("TEST_KEY_RAW_STD", base64.RawStdEncoding.EncodeToString(key64))
	t.Setenv("TEST_KEY_SPACES", "  "+base64.StdEncoding.EncodeToString(key32)+"\n")
	t.Setenv("TEST_KEY_SHORT", base64.StdEncoding.EncodeToString(short))
	t.Setenv("TEST_KEY_RAW", string(key32))
	fileStd := write("std", base64.StdEncoding.EncodeToString(key64)+"\n")
	fileURL := write("url", base64.URLEncoding.EncodeToString(key32))
	fileShort := write("short", base64.RawURLEncoding.EncodeToString(short)+"\n")

	tests := []struct {
		name    string
		secret  SecretRef
		want    []byte
		wantErr string
	}{
		{name: "env std", secret: "env:TEST_KEY_STD", want: key32},
		{name: "env raw url", secret: "env:TEST_KEY_RAW_URL", want: key32},
		{name: "env raw std, 64 bytes", secret: "env:TEST_KEY_RAW_STD", want: key64},
		{name: "env surrounding whitespace", secret: "env:TEST_KEY_SPACES", want: key32},
		{name: "file std with newline", secret: fileStd, want: key64},
		{name: "file url padded", secret: fileURL, want: key32},
		{name: "env too short", secret: "env:TEST_KEY_SHORT",
			wantErr: `key "k1": secret env:TEST_KEY_SHORT decodes to 16 bytes; want at least 32`},
		{name: "file too short", secret: fileShort,
			wantErr: `key "k1": secret ` + string(fileShort) + ` decodes to 16 bytes; want at least 32`},
		{name: "raw bytes, not base64", secret: "env:TEST_KEY_RAW",
			wantErr: `key "k1": secret env:TEST_KEY_RAW is not base64`},
		{name: "env unset", secret: "env:TEST_KEY_UNSET",
			wantErr: `key "k1": resolve secret env:TEST_KEY_UNSET: environment variable is not set`},
		{name: "no reference", secret: "",
			wantErr: `key "k1": resolve secret: no reference configured`},
		{name: "literal", secret: SecretRef(base64.StdEncoding.EncodeToString(key32)),
			wantErr: `key "k1": resolve secret: must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SymmetricKey{ID: "k1", Secret: tt.secret}.Material()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Material: %v", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Material mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Material error = %v, want %q", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Material returned %d bytes with an error", len(got))
			}
			for _, secret := range [][]byte{key32, short, key64} {
				for _, form := range []string{string(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)} {
					if strings.Contains(err.Error(), form) {
						t.Errorf("Material error contains key material: %v", err)
					}
				}
			}
		})
	}
}

func TestParsePrivateKeyPEM(t *testing.T) {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048 := rsaKey(t, 2048)
	tests := []struct {
		name    string
		pem     []byte
		wantErr string
	}{
		{name: "PKCS#8 P-256", pem: pkcs8(t, ecKey(t, elliptic.P256()))},
		{name: "PKCS#8 P-384", pem: pkcs8(t, ecKey(t, elliptic.P384()))},
		{name: "SEC 1 P-384", pem: sec1(t, ecKey(t, elliptic.P384()))},
		{name: "PKCS#1 RSA 2048", pem: pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048))},
		{name: "PKCS#8 RSA 2048", pem: pkcs8(t, rsa2048)},
		{name: "P-521", pem: sec1(t, ecKey(t, elliptic.P521())), wantErr: "is an ECDSA key on an unsupported curve; want P-256 or P-384"},
		{name: "Ed25519", pem: pkcs8(t, ed), wantErr: "is a ed25519.PrivateKey; want an ECDSA or RSA key"},
		{name: "public key", pem: pemBlock("PUBLIC KEY", []byte{1, 2, 3}),
			wantErr: `is a PEM "PUBLIC KEY" block; want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY`},
		{name: "garbage in a PKCS#8 block", pem: pemBlock("PRIVATE KEY", []byte("secret-bytes")), wantErr: "cannot be parsed as a private key"},
		{name: "not PEM", pem: []byte("secret-bytes"), wantErr: "is not PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePrivateKeyPEM(tt.pem)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("parsePrivateKeyPEM: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("parsePrivateKeyPEM error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "512", want: 512},
		{in: "512B", want: 512},
		{in: "1K", want: 1000},
		{in: "1k", want: 1000},
		{in: "2KB", want: 2000},
		{in: "1M", want: 1000000},
		{in: "64M", want: 64000000},
		{in: "3mb", want: 3000000},
		{in: "1Ki", want: 1024},
		{in: "4KiB", want: 4096},
		{in: "1Mi", want: 1 << 20},
		{in: "2MiB", want: 2 << 20},
		{in: "9223372036854775807", want: 9223372036854775807},
		{in: "", wantErr: true},
		{in: "M", wantErr: true},
		{in: "1.5M", wantErr: true},
		{in: "-1K", wantErr: true},
		{in: "+1K", wantErr: true},
		{in: "1 M", wantErr: true},
		{in: " 1M", wantErr: true},
		{in: "1G", wantErr: true},
		{in: "1X", wantErr: true},
		{in: "9223372036854775808", wantErr: true},
		{in: "9223372036854775807K", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseSize(%q) error = %v, want error: %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestGatewayEnvOverrides(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    func(c *Config) // applied to wantExample()
	}{
		{name: "server scalars", environ: []string{
			"SECONDLOOK_SERVER_ADDR=127.0.0.1:9090",
			"SECONDLOOK_SERVER_PUBLIC_URL=https://gw.example.net/base/",
			"SECONDLOOK_SERVER_BODY_LIMIT=4M",
			"SECONDLOOK_SERVER_REQUEST_TIMEOUT=1m",
			"SECONDLOOK_SERVER_READ_HEADER_TIMEOUT=3s",
			"SECONDLOOK_SERVER_SHUTDOWN_TIMEOUT=40s",
		}, want: func(c *Config) {
			c.Server.Addr = "127.0.0.1:9090"
			c.Server.PublicURL = "https://gw.example.net/base"
			c.Server.BodyLimit = "4M"
			c.Server.RequestTimeout = Duration(time.Minute)
			c.Server.ReadHeaderTimeout = Duration(3 * time.Second)
			c.Server.ShutdownTimeout = Duration(40 * time.Second)
		}},
		{name: "cors origins list", environ: []string{"SECONDLOOK_SERVER_CORS_ORIGINS=https://a.example.org, https://b.example.org"},
			want: func(c *Config) { c.Server.CORSOrigins = []string{"https://a.example.org", "https://b.example.org"} }},
		{name: "cors origins cleared", environ: []string{"SECONDLOOK_SERVER_CORS_ORIGINS="},
			want: func(c *Config) { c.Server.CORSOrigins = nil }},
		{name: "server defaults restored", environ: []string{"SECONDLOOK_SERVER_ADDR=", "SECONDLOOK_SERVER_BODY_LIMIT="},
			want: func(c *Config) { c.Server.Addr = "127.0.0.1:8080"; c.Server.BodyLimit = "1M" }},
		{name: "redis", environ: []string{
			"SECONDLOOK_REDIS_URL=redis://10.0.0.9:6379/1",
			"SECONDLOOK_REDIS_CLUSTER_ADDRS=r1:6379,r2:6379",
			"SECONDLOOK_REDIS_PASSWORD=file:/run/secrets/redis",
			"SECONDLOOK_REDIS_PREFIX=sl-test:",
		}, want: func(c *Config) {
			c.Redis = Redis{URL: "redis://10.0.0.9:6379/1", ClusterAddrs: []string{"r1:6379", "r2:6379"},
				Password: "file:/run/secrets/redis", Prefix: "sl-test:"}
		}},
		{name: "keyed token encryption key", environ: []string{
			"SECONDLOOK_KEYS_TOKEN_ENCRYPTION_TOK_2025_06_SECRET=file:/run/secrets/tok-2025-06",
			"SECONDLOOK_KEYS_TOKEN_ENCRYPTION_CURRENT=tok-2025-06",
		}, want: func(c *Config) {
			c.Keys.TokenEncryption[0].Secret = "file:/run/secrets/tok-2025-06"
			c.Keys.TokenEncryptionCurrent = "tok-2025-06"
		}},
		{name: "keyed signing key", environ: []string{
			"SECONDLOOK_KEYS_SIGNING_SIG_2026_01_PRIVATE_KEY=env:SIGNING_PEM",
			"SECONDLOOK_KEYS_SIGNING_CURRENT=sig-2026-01",
		}, want: func(c *Config) { c.Keys.Signing[0].PrivateKey = "env:SIGNING_PEM" }},
		{name: "deid and csrf", environ: []string{
			"SECONDLOOK_KEYS_DEID_ID=deid-2026",
			"SECONDLOOK_KEYS_DEID_SECRET=file:/run/secrets/deid",
			"SECONDLOOK_KEYS_CSRF=env:OTHER_CSRF",
		}, want: func(c *Config) {
			c.Keys.Deid = SymmetricKey{ID: "deid-2026", Secret: "file:/run/secrets/deid"}
			c.Keys.CSRF = "env:OTHER_CSRF"
		}},
		{name: "consent", environ: []string{"SECONDLOOK_CONSENT_VALIDITY=48h"},
			want: func(c *Config) { c.Consent.Validity = Duration(48 * time.Hour) }},
		{name: "keyed issuer", environ: []string{
			"SECONDLOOK_CALLERS_ISSUERS_ST_MARY_IDP_AUDIENCE=secondlook",
			"SECONDLOOK_CALLERS_ISSUERS_ST_MARY_IDP_URL=https://idp2.stmary.example.org",
		}, want: func(c *Config) {
			c.Callers.Issuers[0].Audience = "secondlook"
			c.Callers.Issuers[0].URL = "https://idp2.stmary.example.org"
		}},
		{name: "keyed client of a keyed issuer", environ: []string{
			"SECONDLOOK_CALLERS_ISSUERS_ST_MARY_IDP_CLIENTS_EHR_ST_MARY_NAME=St. Mary's Epic",
			"SECONDLOOK_CALLERS_ISSUERS_ONCONET_CLIENTS_0OA1B2C3ONCO_KIND=ehr",
		}, want: func(c *Config) {
			c.Callers.Issuers[0].Clients[0].Name = "St. Mary's Epic"
			c.Callers.Issuers[1].Clients[0].Kind = "ehr"
		}},
		{name: "assembly", environ: []string{
			"SECONDLOOK_ASSEMBLY_WORKERS=8",
			"SECONDLOOK_ASSEMBLY_MAX_ATTEMPTS=3",
			"SECONDLOOK_ASSEMBLY_BASE_DELAY=1s",
			"SECONDLOOK_ASSEMBLY_VISIBILITY=10m",
		}, want: func(c *Config) {
			c.Assembly = Assembly{Workers: new(8), MaxAttempts: 3, BaseDelay: Duration(time.Second), Visibility: Duration(10 * time.Minute)}
		}},
		{name: "no workers: an API-only replica", environ: []string{"SECONDLOOK_ASSEMBLY_WORKERS=0"},
			want: func(c *Config) { c.Assembly.Workers = new(0) }},
		{name: "empty workers: the default", environ: []string{"SECONDLOOK_ASSEMBLY_WORKERS="},
			want: func(c *Config) { c.Assembly.Workers = new(2) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(examplePath, tt.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := wantExample()
			tt.want(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGatewayEnvOverrideProblems(t *testing.T) {
	noEntry := func(list string) string {
		return "names no configured entry of " + list + "; overrides can change only entries defined in the config file, not create them"
	}
	tests := []struct {
		name    string
		environ []string
		want    []Problem
	}{
		{name: "issuer not configured", environ: []string{"SECONDLOOK_CALLERS_ISSUERS_OTHER_AUDIENCE=x"},
			want: []Problem{{"SECONDLOOK_CALLERS_ISSUERS_OTHER_AUDIENCE", noEntry("callers.issuers")}}},
		{name: "client not configured", environ: []string{"SECONDLOOK_CALLERS_ISSUERS_ST_MARY_IDP_CLIENTS_OTHER_NAME=x"},
			want: []Problem{{"SECONDLOOK_CALLERS_ISSUERS_ST_MARY_IDP_CLIENTS_OTHER_NAME", noEntry("callers.issuers[st-mary-idp].clients")}}},
		{name: "client of another issuer", environ: []string{"SECONDLOOK_CALLERS_ISSUERS_ONCONET_CLIENTS_EHR_ST_MARY_NAME=x"},
			want: []Problem{{"SECONDLOOK_CALLERS_ISSUERS_ONCONET_CLIENTS_EHR_ST_MARY_NAME", noEntry("callers.issuers[onconet].clients")}}},
		{name: "token key not configured", environ: []string{"SECONDLOOK_KEYS_TOKEN_ENCRYPTION_TOK_2099_SECRET=env:X"},
			want: []Problem{{"SECONDLOOK_KEYS_TOKEN_ENCRYPTION_TOK_2099_SECRET", noEntry("keys.token_encryption")}}},
		{name: "issuer id", environ: []string{"SECONDLOOK_CALLERS_ISSUERS_ONCONET_ID=x"},
			want: []Problem{{"SECONDLOOK_CALLERS_ISSUERS_ONCONET_ID",
				"callers.issuers[onconet].id cannot be overridden: entries are matched by it"}}},
		{name: "nested client id", environ: []string{"SECONDLOOK_CALLERS_ISSUERS_ST_MARY_IDP_CLIENTS_EHR_ST_MARY_ID=x"},
			want: []Problem{{"SECONDLOOK_CALLERS_ISSUERS_ST_MARY_IDP_CLIENTS_EHR_ST_MARY_ID",
				"callers.issuers[st-mary-idp].clients[ehr-st-mary].id cannot be overridden: entries are matched by it"}}},
		{name: "token key id", environ: []string{"SECONDLOOK_KEYS_TOKEN_ENCRYPTION_TOK_2026_01_ID=x"},
			want: []Problem{{"SECONDLOOK_KEYS_TOKEN_ENCRYPTION_TOK_2026_01_ID",
				"keys.token_encryption[tok-2026-01].id cannot be overridden: entries are matched by it"}}},
		{name: "bad duration", environ: []string{"SECONDLOOK_ASSEMBLY_VISIBILITY=120"},
			want: []Problem{{"SECONDLOOK_ASSEMBLY_VISIBILITY",
				`assembly.visibility: invalid duration "120": want a number with a unit, such as "30s"`}}},
		{name: "bad size is reported by Validate", environ: []string{"SECONDLOOK_SERVER_BODY_LIMIT=lots"},
			want: []Problem{{"server.body_limit", `invalid size "lots": want a whole number with an optional unit K, M, Ki or Mi, such as "1M"`}}},
		{name: "literal key secret", environ: []string{"SECONDLOOK_KEYS_TOKEN_ENCRYPTION_TOK_2025_06_SECRET=" + b64(32)},
			want: []Problem{{"keys.token_encryption[tok-2025-06].secret",
				`must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`}}},
		{name: "section rather than setting", environ: []string{"SECONDLOOK_KEYS_DEID=env:X"},
			want: []Problem{{"SECONDLOOK_KEYS_DEID", "names no config setting"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(examplePath, tt.environ)
			if err == nil {
				t.Fatalf("Load succeeded with %+v; want an error", cfg)
			}
			if diff := cmp.Diff(tt.want, problemsOf(t, err)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), b64(32)) {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}

// TestEveryKeyedLeafHasOneEnvName extends TestEveryLeafHasOneEnvName to the keyed lists of the gateway sections,
// with ids chosen to collide with key names and with each other's prefixes.
func TestEveryKeyedLeafHasOneEnvName(t *testing.T) {
	issuerIDs := []string{"url", "a", "a-clients", "clients", "audience"}
	clientIDs := []string{"name", "kind", "k", "k-name", "Mixed_Case"}
	keyIDs := []string{"current", "current-x", "secret", "a"}
	cfg := &Config{}
	for _, iid := range issuerIDs {
		is := Issuer{ID: iid}
		for _, cid := range clientIDs {
			is.Clients = append(is.Clients, CallerClient{ID: cid})
		}
		cfg.Callers.Issuers = append(cfg.Callers.Issuers, is)
	}
	for _, id := range keyIDs {
		cfg.Keys.TokenEncryption = append(cfg.Keys.TokenEncryption, SymmetricKey{ID: id})
		cfg.Keys.Signing = append(cfg.Keys.Signing, SigningKey{ID: id})
	}
	root := reflect.ValueOf(cfg).Elem()
	envName := func(path string) string {
		return "SECONDLOOK_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(path))
	}

	type entry struct{ name, path string }
	var entries []entry
	add := func(listPath, id string, leaves []string) {
		for _, p := range leaves {
			if p == "id" {
				continue // Not overridable; TestGatewayEnvOverrideProblems covers it.
			}
			entries = append(entries, entry{envName(listPath + "." + id + "." + p), listPath + "[" + id + "]." + p})
		}
	}
	issuerLeaves := envLeaves(reflect.TypeFor[Issuer](), "")
	clientLeaves := envLeaves(reflect.TypeFor[CallerClient](), "")
	for _, iid := range issuerIDs {
		add("callers.issuers", iid, issuerLeaves)
		for _, cid := range clientIDs {
			add("callers.issuers["+iid+"].clients", cid, clientLeaves)
		}
	}
	for _, id := range keyIDs {
		add("keys.token_encryption", id, envLeaves(reflect.TypeFor[SymmetricKey](), ""))
		add("keys.signing", id, envLeaves(reflect.TypeFor[SigningKey](), ""))
	}
	for _, p := range envLeaves(reflect.TypeFor[Config](), "") {
		entries = append(entries, entry{envName(p), p})
	}
	if len(entries) < 80 {
		t.Fatalf("found only %d settings; the leaf walk is broken", len(entries))
	}

	for _, e := range entries {
		// The nested path "callers.issuers[a].clients" appears in the env name as CALLERS_ISSUERS_A_CLIENTS.
		name := strings.NewReplacer("[", "_", "]", "").Replace(e.name)
		t.Run(name, func(t *testing.T) {
			var r envResolver
			targets := r.resolve(root, strings.TrimPrefix(name, EnvPrefix), "")
			var got []string
			for _, tg := range targets {
				got = append(got, tg.path)
			}
			if diff := cmp.Diff([]string{e.path}, got); diff != "" {
				t.Errorf("%s resolves to (-want +got):\n%s", name, diff)
			}
		})
	}
}

func TestValidateForServeDoesNotModify(t *testing.T) {
	environ, _ := serveEnv(t)
	cfg, err := Load(examplePath, environ)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	before, _ := Load(examplePath, environ)
	cfg.Keys.TokenEncryptionCurrent = ""
	before.Keys.TokenEncryptionCurrent = ""
	_ = cfg.ValidateForServe()
	if diff := cmp.Diff(before, cfg); diff != "" {
		t.Errorf("ValidateForServe modified the config (-before +after):\n%s", diff)
	}
}
