// Package config defines secondlook's one typed configuration and loads it from a YAML file with SECONDLOOK_*
// environment overrides, so that every setting has a single, checked home.
//
// Loading is strict because a gateway that silently ignores a misspelt limit or credential setting fails open:
// unknown YAML keys, unknown SECONDLOOK_ variables, multiple YAML documents and files over 1 MiB are all errors, and
// [Config.Validate] reports every problem at once rather than the first one found. [Config.ValidateForServe] adds
// what `secondlook serve` needs (its public URL, keys, callers and sources) and reads every secret it will use, so a
// gateway missing a key fails at start-up, listing everything missing, rather than on first use.
//
// # Environment overrides
//
// Every leaf setting can be overridden by an environment variable named SECONDLOOK_ followed by its upper-cased key
// path joined with underscores, for example SECONDLOOK_LOG_LEVEL=debug. Entries of lists of sections (sources,
// callers.issuers and their clients, keys.token_encryption, keys.signing) are addressed by id, upper-cased with
// "-" replaced by "_": SECONDLOOK_SOURCES_ST_MARY_TIMEOUTS_REQUEST=10s overrides timeouts.request of the source
// whose id is "st-mary", and SECONDLOOK_CALLERS_ISSUERS_IDP_CLIENTS_EHR_1_NAME the name of client "ehr-1" of
// issuer "idp". Lists are comma-separated (SECONDLOOK_SOURCES_ST_MARY_RESOURCE_TYPES=Condition,ImagingStudy)
// and an empty value clears a setting so that its default applies. Overrides can change entries defined in the file
// but cannot create them, and cannot change an entry's id. Variables that belong to other features rather than to
// the config are listed by [IsReserved].
//
// # Secrets
//
// The file never holds a secret, only a [SecretRef] naming where to read it ("env:NAME" or "file:/abs/path"), so the
// loaded Config can be printed or logged without leaking credentials; the secret itself is read by
// [SecretRef.Resolve] when it is needed.
package config
