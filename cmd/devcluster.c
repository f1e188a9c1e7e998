/*
 * devcluster.c - the embedded PostgreSQL of `mspflow dev` (see devdb.h).
 *
 * Layout under the state folder:  pg/data (the cluster), pg/run (its
 * Unix socket), pg.log (server output).  Process tree:
 *
 *   mspflow --pipe--> guardian --fork/exec--> postgres (postmaster)
 *
 * mspflow holds the only write end of the pipe.  When mspflow exits for
 * any reason the kernel closes it, the guardian reads EOF and stops the
 * postmaster with a fast shutdown.  The postmaster also gets
 * PR_SET_PDEATHSIG so that it stops if the guardian itself is killed.
 * Everything here runs before any event loop, so blocking calls are fine.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cmd/devdb.h"
#include "core/log.h"

struct mf_devdb {
	pid_t guardian;
	int pipe_w;
};

struct cluster {
	char bindir[512], root[1024], data[1100], sock[1100], log[1100];
	uid_t uid;
	gid_t gid;
	bool drop;			/* run the server as another user */
	const char *user;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static bool has_server(const char *dir)
{
	char a[600], b[600];

	snprintf(a, sizeof(a), "%s/initdb", dir);
	snprintf(b, sizeof(b), "%s/postgres", dir);
	return access(a, X_OK) == 0 && access(b, X_OK) == 0;
}

static int find_bindir(char *out, size_t n)
{
	FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
	DIR *d;
	struct dirent *de;
	int best = -1;

	if (f) {
		if (fgets(out, (int)n, f)) {
			out[strcspn(out, "\n")] = '\0';
			if (pclose(f) == 0 && has_server(out))
				return 0;
		} else {
			pclose(f);
		}
	}
	d = opendir("/usr/lib/postgresql");
	while (d && (de = readdir(d)) != NULL) {
		char dir[512];
		int v = atoi(de->d_name);

		snprintf(dir, sizeof(dir), "/usr/lib/postgresql/%s/bin", de->d_name);
		if (v > best && has_server(dir)) {
			best = v;
			snprintf(out, n, "%s", dir);
		}
	}
	if (d)
		closedir(d);
	return best >= 0 ? 0 : -1;
}

static void become(const struct cluster *c)
{
	if (!c->drop)
		return;
	if (setgroups(0, NULL) < 0 || setgid(c->gid) < 0 || setuid(c->uid) < 0)
		_exit(126);
}

/* Runs argv (as the cluster user), output appended to the log; waits. */
static int run_cmd(const struct cluster *c, char *const argv[])
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		become(c);
		execv(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Can the cluster user reach (search) path?  Checked by actually trying. */
static bool user_can_reach(const struct cluster *c, const char *path)
{
	pid_t pid;
	int st;

	if (!c->drop)
		return true;
	pid = fork();
	if (pid == 0) {
		become(c);
		_exit(access(path, X_OK) == 0 ? 0 : 1);
	}
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static unsigned long hash_str(const char *s)
{
	unsigned long h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

static int mkdir_owned(const struct cluster *c, const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -1;
	if (c->drop && chown(path, c->uid, c->gid) < 0)
		return -1;
	return chmod(path, 0700);
}

static void log_tail(const char *path, char *out, size_t n)
{
	FILE *f = fopen(path, "r");
	long size;
	size_t got;

	out[0] = '\0';
	if (f == NULL)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > (long)n - 1 ? size - ((long)n - 1) : 0, SEEK_SET);
	got = fread(out, 1, n - 1, f);
	out[got] = '\0';
	for (char *p = out; *p; p++)
		if (*p == '\n' || *p == '"')
			*p = ' ';
	fclose(f);
}

/* A postmaster left behind by a crash of an older build (or one started by
 * hand) holds the data folder: stop it. */
static void stop_stale(const struct cluster *c)
{
	char pidfile[1200], cmdline[256], path[64];
	FILE *f;
	long pid = 0;
	int fd;
	ssize_t n;

	snprintf(pidfile, sizeof(pidfile), "%s/postmaster.pid", c->data);
	f = fopen(pidfile, "r");
	if (f == NULL)
		return;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	if (pid <= 1 || kill((pid_t)pid, 0) < 0)
		return;		/* stale file: postgres itself will replace it */
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, cmdline, sizeof(cmdline) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return;
	cmdline[n] = '\0';
	if (strstr(cmdline, "postgres") == NULL)
		return;		/* the pid was reused by something else */
	mf_warn("dev", "stopping a postgres left over from an earlier run", MF_I("pid", pid));
	kill((pid_t)pid, SIGINT);
	for (int i = 0; i < 200 && kill((pid_t)pid, 0) == 0; i++)
		usleep(50000);
	if (kill((pid_t)pid, 0) == 0) {
		kill((pid_t)pid, SIGQUIT);
		for (int i = 0; i < 100 && kill((pid_t)pid, 0) == 0; i++)
			usleep(50000);
	}
}

static void close_fds_except(int keep1, int keep2)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int dfd = d ? dirfd(d) : -1;

	while (d && (de = readdir(d)) != NULL) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] == '.' || fd <= 2 || fd == keep1 || fd == keep2 || fd == dfd)
			continue;
		close(fd);
	}
	if (d)
		closedir(d);
}

static void guardian_main(const struct cluster *c, int pipe_r)
{
	char postgres[600];
	pid_t pm;
	int st, logfd;

	setsid();
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGPIPE, SIG_DFL);
	logfd = open(c->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	close_fds_except(pipe_r, logfd);
	snprintf(postgres, sizeof(postgres), "%s/postgres", c->bindir);
	pm = fork();
	if (pm == 0) {
		char *argv[] = { postgres, "-D", (char *)c->data, "-k", (char *)c->sock,
				 "-c", "listen_addresses=", "-c", "fsync=off", "-c", "unix_socket_permissions=0700",
				 "-c", "max_connections=100", NULL };

		close(pipe_r);
		if (logfd >= 0) {
			dup2(logfd, 1);
			dup2(logfd, 2);
			close(logfd);
		}
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		become(c);
		prctl(PR_SET_PDEATHSIG, SIGINT);
		execv(postgres, argv);
		_exit(127);
	}
	if (pm < 0)
		_exit(1);
	for (;;) {
		struct pollfd pfd = { .fd = pipe_r, .events = POLLIN };
		char buf[16];

		if (waitpid(pm, &st, WNOHANG) == pm)
			_exit(0);		/* the server stopped by itself */
		if (poll(&pfd, 1, 500) > 0 && read(pipe_r, buf, sizeof(buf)) <= 0)
			break;			/* mspflow is gone */
	}
	kill(pm, SIGINT);			/* fast shutdown */
	for (int i = 0; i < 200; i++) {
		if (waitpid(pm, &st, WNOHANG) == pm)
			_exit(0);
		usleep(50000);
	}
	kill(pm, SIGQUIT);
	waitpid(pm, &st, 0);
	_exit(0);
}

static int create_database(const char *sock, mf_err_t *err)
{
	char ci[1300];
	PGconn *conn;
	PGresult *r;
	int rc = 0;

	snprintf(ci, sizeof(ci), "host=%s dbname=postgres user=mspflow", sock);
	conn = PQconnectdb(ci);
	if (PQstatus(conn) != CONNECTION_OK) {
		PQfinish(conn);
		return mf_err_set(err, 500, "dev_db", "cannot connect to the embedded PostgreSQL");
	}
	r = PQexec(conn, "SELECT 1 FROM pg_database WHERE datname = 'mspflow'");
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0) {
		PQclear(r);
		r = PQexec(conn, "CREATE DATABASE mspflow");
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			rc = mf_err_set(err, 500, "dev_db", "cannot create database mspflow: %s",
					PQresultErrorMessage(r));
	}
	PQclear(r);
	PQfinish(conn);
	return rc;
}

static int prepare(struct cluster *c, const char *state_dir, mf_err_t *err)
{
	char state[1024], pgdir[1100], link[1100];
	struct stat st;

	if (realpath(state_dir, state) == NULL)
		return mf_err_set(err, 500, "dev_db", "cannot resolve state folder %s", state_dir);
	if (find_bindir(c->bindir, sizeof(c->bindir)) < 0)
		return mf_err_set(err, 500, "dev_db",
				  "no PostgreSQL server binaries found (initdb, postgres); install the Debian package postgresql");
	c->drop = geteuid() == 0;
	if (c->drop) {
		struct passwd *pw;

		c->user = getenv("MSPFLOW_DEV_USER") ? getenv("MSPFLOW_DEV_USER") : "nobody";
		pw = getpwnam(c->user);
		if (pw == NULL || pw->pw_uid == 0)
			return mf_err_set(err, 500, "dev_db", "user %s (to run PostgreSQL as) does not exist", c->user);
		c->uid = pw->pw_uid;
		c->gid = pw->pw_gid;
	}
	snprintf(c->root, sizeof(c->root), "%s", state);
	snprintf(c->log, sizeof(c->log), "%s/pg.log", state);
	snprintf(link, sizeof(link), "%s/pg", state);
	/* our own state folder may be searched (not listed) by the server
	 * user; whether its ancestors can be is checked next */
	if (c->drop && stat(state, &st) == 0 && st.st_uid == geteuid() && !(st.st_mode & S_IXOTH))
		chmod(state, (st.st_mode & 07777) | S_IXOTH);
	if (c->drop && !user_can_reach(c, state)) {
		/* e.g. a clone under /root (0700): keep the cluster where the
		 * server user can reach it, and point STATE/pg at it */
		snprintf(c->root, sizeof(c->root), "/var/tmp/mspflow-dev-%lx", hash_str(state));
		if (mkdir(c->root, 0711) < 0 && errno != EEXIST)
			return mf_err_set(err, 500, "dev_db", "cannot create %s", c->root);
		chmod(c->root, 0711);
		snprintf(pgdir, sizeof(pgdir), "%s/pg", c->root);
		if (lstat(link, &st) < 0 && symlink(pgdir, link) < 0)
			return mf_err_set(err, 500, "dev_db", "cannot link %s", link);
		mf_info("dev", "state folder not reachable by the server user; cluster kept elsewhere",
			MF_S("user", c->user), MF_S("cluster", pgdir));
	}
	snprintf(pgdir, sizeof(pgdir), "%s/pg", c->root);
	snprintf(c->data, sizeof(c->data), "%s/data", pgdir);
	snprintf(c->sock, sizeof(c->sock), "%s/run", pgdir);
	if (mkdir_owned(c, pgdir) < 0)
		return mf_err_set(err, 500, "dev_db", "cannot create %s: %s", pgdir, strerror(errno));
	if (strlen(c->sock) + sizeof("/.s.PGSQL.5432") > 107)
		snprintf(c->sock, sizeof(c->sock), "/tmp/mspflow-%lx", hash_str(state));
	if (mkdir_owned(c, c->sock) < 0)
		return mf_err_set(err, 500, "dev_db", "cannot create %s: %s", c->sock, strerror(errno));
	if (c->drop) {
		int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		if (fd >= 0) {
			if (fchown(fd, c->uid, c->gid) < 0)
				mf_warn("dev", "cannot hand pg.log to the server user");
			close(fd);
		}
	}
	return 0;
}

int mf_devdb_start(const char *state_dir, mf_devdb_t **out, char **conninfo_out, mf_err_t *err)
{
	struct cluster c = { 0 };
	char version[1200], ping[1300], tail[400];
	struct stat st;
	double t0 = now_ms();
	int p[2];
	mf_devdb_t *db;
	pid_t g;

	*out = NULL;
	*conninfo_out = NULL;
	if (prepare(&c, state_dir, err) < 0)
		return -1;
	snprintf(version, sizeof(version), "%s/PG_VERSION", c.data);
	if (stat(version, &st) < 0) {
		char initdb[600], rmcmd[1300];
		char *argv[] = { initdb, "-D", c.data, "-U", "mspflow", "-A", "trust", "-E", "UTF8",
				 "--no-sync", "--locale=C", NULL };

		/* no PG_VERSION: never initialised, or initdb was interrupted */
		snprintf(rmcmd, sizeof(rmcmd), "rm -rf '%s'", c.data);
		if (system(rmcmd) != 0)
			return mf_err_set(err, 500, "dev_db", "cannot clear %s", c.data);
		snprintf(initdb, sizeof(initdb), "%s/initdb", c.bindir);
		mf_info("dev", "creating the embedded PostgreSQL cluster", MF_S("data", c.data));
		if (run_cmd(&c, argv) != 0) {
			log_tail(c.log, tail, sizeof(tail));
			return mf_err_set(err, 500, "dev_db", "initdb failed: %s", tail);
		}
	} else {
		stop_stale(&c);
	}

	db = calloc(1, sizeof(*db));
	if (db == NULL || pipe2(p, O_CLOEXEC) < 0) {
		free(db);
		return mf_err_set(err, 500, "dev_db", "out of resources");
	}
	g = fork();
	if (g < 0) {
		close(p[0]);
		close(p[1]);
		free(db);
		return mf_err_set(err, 500, "dev_db", "fork failed");
	}
	if (g == 0) {
		close(p[1]);
		guardian_main(&c, p[0]);
	}
	close(p[0]);
	db->guardian = g;
	db->pipe_w = p[1];

	snprintf(ping, sizeof(ping), "host=%s dbname=postgres user=mspflow connect_timeout=2", c.sock);
	for (;;) {
		int wst;

		if (PQping(ping) == PQPING_OK)
			break;
		if (waitpid(g, &wst, WNOHANG) == g || now_ms() - t0 > 30000) {
			db->guardian = waitpid(g, &wst, WNOHANG) == 0 ? g : 0;
			mf_devdb_stop(db);
			log_tail(c.log, tail, sizeof(tail));
			return mf_err_set(err, 500, "dev_db", "PostgreSQL did not start: %s", tail);
		}
		usleep(50000);
	}
	if (create_database(c.sock, err) < 0) {
		mf_devdb_stop(db);
		return -1;
	}
	if (asprintf(conninfo_out, "host=%s dbname=mspflow user=mspflow", c.sock) < 0) {
		*conninfo_out = NULL;
		mf_devdb_stop(db);
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	}
	mf_info("dev", "embedded PostgreSQL ready", MF_S("data", c.data), MF_S("socket_dir", c.sock),
		MF_D("startup_ms", now_ms() - t0));
	*out = db;
	return 0;
}

void mf_devdb_stop(mf_devdb_t *db)
{
	int st;

	if (db == NULL)
		return;
	close(db->pipe_w);	/* the guardian sees EOF and stops postgres */
	if (db->guardian > 0)
		while (waitpid(db->guardian, &st, 0) < 0 && errno == EINTR)
			;
	mf_info("dev", "embedded PostgreSQL stopped");
	free(db);
}
