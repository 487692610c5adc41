"""What vulture (pyproject's [tool.vulture], run by scripts/test) cannot see used, each
group with the reason. Reviewed for issue 13: what it found dead otherwise was removed.
A name added here says why in its group; an unused name that fits no group is dead code.
"""

# Read by libraries: ORM columns and SQLAlchemy hooks (the mapper, the migrations), a
# connection's settings, a zip entry's compression, an attribute set on a model.
_.isolation_level  # unused attribute (vault/audit/scan_worker.py:24)
_.read_only  # unused attribute (vault/audit/scan_worker.py:25)
_.is_disconnect  # unused attribute (vault/db.py:76)
_.compress_type  # unused attribute (vault/exports/archive.py:216)
_.compress_type  # unused attribute (vault/exports/archive.py:292)
_.started_at  # unused attribute (vault/exports/service.py:260)
delivered_at  # unused variable (vault/models/audit.py:150)
impl  # unused variable (vault/models/base.py:31)
cache_ok  # unused variable (vault/models/base.py:32)
_.process_bind_param  # unused method (vault/models/base.py:34)
_.process_result_value  # unused method (vault/models/base.py:45)
type_annotation_map  # unused variable (vault/models/base.py:56)
started_at  # unused variable (vault/models/export.py:41)
notification_id  # unused variable (vault/models/notification.py:76)
sent_at  # unused variable (vault/models/notification.py:89)
previous_visit_at  # unused variable (vault/models/web.py:37)

# Pydantic models and settings: fields serialised to JSON, model_config read by pydantic.
opposed_at  # unused variable (vault/api/records.py:121)
model_config  # unused variable (vault/api/exports.py:27)
model_config  # unused variable (vault/identity/issuers.py:24)
model_config  # unused variable (vault/notifications/schemas.py:13)
available_events  # unused variable (vault/notifications/schemas.py:38)
model_config  # unused variable (vault/policies/schemas.py:23)
grantee_issuer  # unused variable (vault/policies/schemas.py:116)
treating_doctor  # unused variable (vault/policies/schemas.py:150)
care_team  # unused variable (vault/policies/schemas.py:151)
point_of_care  # unused variable (vault/policies/schemas.py:152)
blocked  # unused variable (vault/policies/schemas.py:153)
representatives  # unused variable (vault/policies/schemas.py:155)
emergency_access_refused  # unused variable (vault/policies/schemas.py:156)
emergency_accesses  # unused variable (vault/policies/schemas.py:157)
by_role  # unused variable (vault/policies/schemas.py:190)
code_expires  # unused variable (vault/policies/schemas.py:229)
code_expires  # unused variable (vault/policies/schemas.py:237)
model_config  # unused variable (vault/settings.py:14)

# Authlib's hooks and class attributes (vault/identity/oauth.py): called by the OAuth library.
ASSERTION_TYPE  # unused variable (vault/identity/oauth.py:58)
_.get_client_id  # unused method (vault/identity/oauth.py:212)
_.get_default_redirect_uri  # unused method (vault/identity/oauth.py:215)
_.check_redirect_uri  # unused method (vault/identity/oauth.py:227)
redirect_uri  # unused variable (vault/identity/oauth.py:227)
_.check_client_secret  # unused method (vault/identity/oauth.py:230)
_.check_endpoint_auth_method  # unused method (vault/identity/oauth.py:242)
_.check_response_type  # unused method (vault/identity/oauth.py:251)
response_type  # unused variable (vault/identity/oauth.py:251)
_.check_grant_type  # unused method (vault/identity/oauth.py:254)
TOKEN_ENDPOINT_AUTH_METHODS  # unused variable (vault/identity/oauth.py:283)
_.validate_requested_scope  # unused method (vault/identity/oauth.py:285)
CLIENT_AUTH_METHOD  # unused variable (vault/identity/oauth.py:294)
_.resolve_client_public_key  # unused method (vault/identity/oauth.py:304)
_.process_assertion_claims  # unused method (vault/identity/oauth.py:313)
_.query_client  # unused method (vault/identity/oauth.py:371)
_.save_token  # unused method (vault/identity/oauth.py:381)
_.create_oauth2_request  # unused method (vault/identity/oauth.py:387)
_.create_json_request  # unused method (vault/identity/oauth.py:390)
_.handle_response  # unused method (vault/identity/oauth.py:393)
expires_in  # unused variable (vault/identity/oauth.py:404)
include_refresh_token  # unused variable (vault/identity/oauth.py:405)

# Enum members and constants named for the reader: values the decision compares as strings, and the issuer migration a7c31e5b90d2 writes.
UNBOUND_ISSUER  # unused variable (vault/access/state.py:25)
TUTELLE  # unused variable (vault/access/state.py:56)
HABILITATION_FAMILIALE  # unused variable (vault/access/state.py:57)
MANDAT_PROTECTION_FUTURE  # unused variable (vault/access/state.py:58)

# Fields of result records, read by the benchmark's JSON output, the export's summary and the templates of the patient's space.
ingest_rss_baseline_mb  # unused variable (vault/bench/operations.py:66)
documents_per_search  # unused variable (vault/bench/reads.py:44)
max_ms  # unused variable (vault/bench/stats.py:29)
patients_added  # unused variable (vault/bench/store.py:92)
_.patients_added  # unused attribute (vault/bench/store.py:189)
history_entries  # unused variable (vault/exports/archive.py:74)
key_from_archive  # unused variable (vault/exports/verify.py:43)
_.web_sessions  # unused attribute (vault/web/routes.py:934)
category_label  # unused variable (vault/web/space.py:90)
may_delete  # unused variable (vault/web/space.py:98)
may_mask  # unused variable (vault/web/space.py:99)
_.previous_visit_at  # unused attribute (vault/web/space.py:248)
early_days  # unused variable (vault/web/lifetime.py:52)
deleted_by  # unused variable (vault/web/lifetime.py:53)

# Entry points reached by name: uvicorn's factory string (vault/cli.py), PyKCS11's attribute loop
# variable, and a module's __getattr__ (PEP 562: CONFIRMATION_TEMPLATE, read from the catalog).
create_app  # unused function (vault/api/app.py:56)
attribute  # unused variable (vault/storage/keys/pkcs11.py:119)
__getattr__  # unused function (vault/notifications/templates.py:92)

# Called only by the tests, as a reference the tests check the production path against (an in-memory Merkle tree, the client-side proof verifier, sizes, the stale-key count, a policy's view).
_.treating_doctor  # unused property (vault/access/state.py:148)
in_memory  # unused function (vault/audit/merkle.py:73)
verify_consistency  # unused function (vault/audit/merkle.py:156)
sealed_size  # unused function (vault/storage/crypto.py:75)
_.count_stale  # unused method (vault/storage/keys/service.py:199)

# The sharding classification (vault/models/sharding.py): read by the schema rule's test,
# tests/models/schema_rule.py, which checks the migrated database against it.
PATIENT_OWNED  # unused variable (vault/models/sharding.py:20)
REFERENCE  # unused variable (vault/models/sharding.py:37)
GLOBAL  # unused variable (vault/models/sharding.py:47)
PER_LOG  # unused variable (vault/models/sharding.py:46)

# One log's checkpoint opened against its origin (vault/audit/checkpoints.py): the verifier
# opens them against every log's origin; tests/audit/test_signing.py holds this form.
open_checkpoint  # unused function (vault/audit/checkpoints.py:69)
