/*
 * devdb.h - the embedded default: a private PostgreSQL cluster under the
 * state folder for `mspflow dev`.
 *
 * First start: finds the server binaries (pg_config --bindir, then
 * /usr/lib/postgresql/<newest>/bin, then PATH), initdb's DIR/pg (superuser
 * "mspflow", trust auth on a Unix socket only, no TCP), then starts
 * postgres with its socket in a folder under DIR (or a short /tmp path when
 * DIR's path is too long for a Unix socket).  When mspflow runs as root the
 * cluster is owned and run by an unprivileged user ("nobody" unless
 * MSPFLOW_DEV_USER names another), as PostgreSQL requires.
 *
 * The postmaster is watched by a small guardian process that stops it
 * (fast shutdown) as soon as mspflow exits for any reason, SIGKILL
 * included, so no orphaned postmaster holds the folder; a stale one left by
 * an older crash is stopped or cleaned on the next start.
 */
#ifndef MF_DEVDB_H
#define MF_DEVDB_H

#include "core/err.h"

typedef struct mf_devdb mf_devdb_t;

/* Starts (initialising first if needed) the cluster under state_dir and
 * waits until it accepts connections.  *conninfo_out (caller frees) is a
 * libpq conninfo for database "mspflow". */
int mf_devdb_start(const char *state_dir, mf_devdb_t **out, char **conninfo_out, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Stops PostgreSQL (fast shutdown), waits for it, frees db.  NULL is fine. */
void mf_devdb_stop(mf_devdb_t *db);

#endif
