/*
 * authz.h - who may do what to which tenant: the reach and permission rules
 * of the public contract (section 4), as pure functions with no I/O, so
 * that every tenant-scoped route asks the same question the same way and
 * the rules can be tested exhaustively.
 *
 * Reach: a token reaches its own tenant; an msp's token also reaches that
 * msp's clients; a platform_admin reaches every tenant.  Outside reach the
 * answer is POL_NOT_FOUND (the caller answers 404 exactly like a missing
 * tenant); inside reach without the permission it is POL_FORBIDDEN (403).
 */
#ifndef POL_AUTHZ_H
#define POL_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>

enum pol_kind { POL_KIND_NONE = 0, POL_PLATFORM, POL_PARTNER, POL_MSP, POL_CLIENT };

/* Built-in roles as bits; tenant-defined roles (e.g. "finance_approver")
 * carry no bit: they grant nothing here and only matter to approvals. */
enum pol_role {
	POL_R_PLATFORM_ADMIN = 1u << 0,
	POL_R_PARTNER_ADMIN = 1u << 1,
	POL_R_MSP_ADMIN = 1u << 2,
	POL_R_MSP_OPERATOR = 1u << 3,
	POL_R_CLIENT_ADMIN = 1u << 4,
	POL_R_CLIENT_USER = 1u << 5,
};

enum pol_perm {
	POL_READ,		/* GET a tenant, its clients, /access */
	POL_EDIT,		/* PATCH a tenant */
	POL_CREATE_TENANT,	/* POST /v1/tenants (target: the platform tenant) */
	POL_CREATE_CLIENT,	/* POST /v1/tenants/{msp}/clients */
	POL_LIFECYCLE,		/* suspend, resume, delete */
	POL_API_CLIENTS,	/* manage API clients */
	POL_USERS,		/* manage portal users */
	POL_POLICY,		/* read and write the policy document */
	POL_CREDENTIALS,	/* write and list vault credentials (msps and clients) */
	POL_CONNECTORS,		/* manage and try connectors (msps and clients) */
	POL_WORKFLOWS,		/* write workflow definitions (msps and clients) */
	POL_RUNS,		/* start, cancel and retry runs, post events (msps and clients) */
	POL_TEMPLATES,		/* publish and yank templates, manage signing keys (partners) */
	POL_CATALOG,		/* read the template catalog (routes without {tenant_id}) */
	POL_AUDIT,		/* read the audit log */
	POL_PERM_COUNT
};

enum pol_decision { POL_ALLOW = 0, POL_NOT_FOUND, POL_FORBIDDEN };

/* What the rules need to know of a tenant.  ids are canonical UUID text. */
typedef struct pol_tenant {
	const char *id;
	const char *parent_id;		/* "" for the platform */
	enum pol_kind kind;
} pol_tenant_t;

/* The authenticated caller: its tenant and its built-in role bits (already
 * masked to the roles its tenant's kind can hold, see pol_roles_mask). */
typedef struct pol_subject {
	pol_tenant_t tenant;
	unsigned roles;
} pol_subject_t;

enum pol_kind pol_kind_parse(const char *s);		/* POL_KIND_NONE if unknown */
const char *pol_kind_name(enum pol_kind k);
/* Bit of a built-in role name, 0 for any other name. */
unsigned pol_role_bit(const char *name);
/* The built-in roles a tenant of this kind can hold. */
unsigned pol_roles_allowed(enum pol_kind k);
/* A role name's shape: ^[a-z][a-z0-9_]{1,62}$. */
bool pol_role_name_ok(const char *name);
/* Can a tenant of kind k give this role to one of its API clients or
 * users?  Built-in roles only for their kind; tenant-defined roles only in
 * msp and client tenants. */
bool pol_role_grantable(enum pol_kind k, const char *name);

bool pol_reaches(const pol_subject_t *who, const pol_tenant_t *target);
enum pol_decision pol_decide(const pol_subject_t *who, const pol_tenant_t *target, enum pol_perm perm);
const char *pol_perm_name(enum pol_perm p);

#endif
