/* auth.c - find registry credentials the way podman and docker do; the
 * order and the key rules are in auth.h.
 *
 * Files are parsed with jansson (already the project's JSON library), base64
 * with OpenSSL's EVP_DecodeBlock (already linked for digests).  Helpers run
 * with fork+execvp on pipes; we write the host, close stdin, read at most
 * SF_AUTH_HELPER_OUT_MAX bytes of stdout and wait for the exit, both within
 * one deadline, and kill the helper when it is late.  Its stderr is
 * inherited (it talks to the user).
 *
 * Invariant: no secret (password, identity token, the base64 "auth") is
 * ever formatted into a message; messages name the file or the helper.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELPER_NAME_MAX 64
#define B64_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#define DOCKER_IO_LEGACY "https://index.docker.io/v1/"

static sf_ret oom(struct sf_error *err)
{
	return sf_fail(err, ENOMEM, "out of memory");
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void sf_creds_clear(struct sf_creds *c)
{
	if (!c)
		return;
	free_secret(c->username);
	free_secret(c->password);
	free_secret(c->identity_token);
	free(c->source);
	memset(c, 0, sizeof(*c));
}

sf_ret sf_auth_decode_basic(const char *b64, char **user, char **pass, struct sf_error *err)
{
	size_t n = strlen(b64);
	unsigned char *buf;
	char *colon;
	int len;

	*user = *pass = NULL;
	/* strict: the alphabet, and '=' only as the last one or two */
	size_t pad = n > 0 && b64[n - 1] == '=' ? (n > 1 && b64[n - 2] == '=' ? 2 : 1) : 0;
	if (n == 0 || n % 4 || n > SF_AUTH_FILE_MAX || strspn(b64, B64_ALPHABET) != n - pad)
		return sf_fail(err, EINVAL, "\"auth\" is not valid base64");
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return oom(err);
	len = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n);
	if (len < (int)pad) {
		free(buf);
		return sf_fail(err, EINVAL, "\"auth\" is not valid base64");
	}
	len -= (int)pad; /* EVP_DecodeBlock counts the padding as zero bytes */
	buf[len] = '\0';
	colon = memchr(buf, ':', (size_t)len);
	if (!colon || strlen((char *)buf) != (size_t)len) {
		explicit_bzero(buf, (size_t)len);
		free(buf);
		return sf_fail(err, EINVAL, "\"auth\" does not decode to user:password");
	}
	*user = strndup((char *)buf, (size_t)(colon - (char *)buf));
	*pass = strdup(colon + 1);
	explicit_bzero(buf, (size_t)len);
	free(buf);
	if (!*user || !*pass) {
		free_secret(*user);
		free_secret(*pass);
		*user = *pass = NULL;
		return oom(err);
	}
	return 0;
}

/* ---- credential helpers ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool valid_helper_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > HELPER_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') ||
		      (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

/* Read the child's stdout until EOF, the size cap or the deadline. */
static sf_ret read_output(int fd, char *buf, size_t cap, size_t *len, int64_t deadline)
{
	*len = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - mono_ms();
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (!p.revents)
			continue;
		if (*len == cap)
			return -EFBIG;
		n = read(fd, buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		*len += (size_t)n;
	}
}

static int wait_child(pid_t pid, bool kill_it)
{
	int st = 0;

	if (kill_it)
		kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

/* Reap pid by the deadline, or kill it then: end of its stdout does not
 * mean a helper is done (one may close stdout and keep running), and a
 * plain waitpid() would then block the lookup, and the mount, forever.
 * Polls with naps growing to 20 ms: helpers run once per lookup. */
static sf_ret reap_by(pid_t pid, int64_t deadline, int *status)
{
	useconds_t nap = 1000;

	for (;;) {
		pid_t w = waitpid(pid, status, WNOHANG);

		if (w == pid)
			return 0;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (mono_ms() >= deadline) {
			*status = wait_child(pid, true);
			return -ETIMEDOUT;
		}
		usleep(nap);
		if (nap < 20000)
			nap *= 2;
	}
}

/* Run `docker-credential-<name> get` with server on stdin; its stdout in
 * out (NUL-terminated), exit status in *status. */
static sf_ret run_helper(const char *prog, const char *server, int timeout_ms, char *out,
			 size_t cap, int *status, struct sf_error *err)
{
	int64_t deadline = mono_ms() + timeout_ms; /* for the answer and the exit */
	int in[2], outp[2];
	size_t len = 0;
	pid_t pid;
	sf_ret r;

	if (pipe2(in, O_CLOEXEC) < 0)
		return sf_fail(err, errno, "%s: pipe: %s", prog, strerror(errno));
	if (pipe2(outp, O_CLOEXEC) < 0) {
		int e = errno;
		close(in[0]);
		close(in[1]);
		return sf_fail(err, e, "%s: pipe: %s", prog, strerror(e));
	}
	pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(outp[1], 1);
		execlp(prog, prog, "get", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(outp[1]);
	if (pid < 0) {
		int e = errno;
		close(in[1]);
		close(outp[0]);
		return sf_fail(err, e, "%s: fork: %s", prog, strerror(e));
	}
	/* a helper that exits without reading its stdin must not kill us */
	signal(SIGPIPE, SIG_IGN);
	ssize_t w = write(in[1], server, strlen(server)); /* failure: the exit status tells */
	(void)w;
	close(in[1]);
	r = read_output(outp[0], out, cap - 1, &len, deadline);
	close(outp[0]);
	out[len] = '\0';
	if (r < 0) {
		*status = wait_child(pid, true);
	} else if ((r = reap_by(pid, deadline, status)) == -ETIMEDOUT) {
		explicit_bzero(out, len);
		return sf_fail(err, ETIMEDOUT, "credential helper %s did not exit within %d ms "
			       "(it closed its output)", prog, timeout_ms);
	}
	if (r == -ETIMEDOUT)
		return sf_fail(err, ETIMEDOUT, "credential helper %s did not answer within %d ms",
			       prog, timeout_ms);
	if (r < 0)
		return sf_fail(err, -r, "credential helper %s: %s", prog,
			       r == -EFBIG ? "answer too long" : strerror(-r));
	return 0;
}

static sf_ret parse_helper_answer(const char *prog, const char *out, struct sf_creds *c,
				  struct sf_error *err)
{
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	const char *user = j ? json_string_value(json_object_get(j, "Username")) : NULL;
	const char *secret = j ? json_string_value(json_object_get(j, "Secret")) : NULL;
	sf_ret r = 0;

	if (!j || !json_is_object(j) || !user || !secret) {
		json_decref(j);
		return sf_fail(err, EINVAL, "credential helper %s: answer is not "
			       "{\"Username\": ..., \"Secret\": ...}", prog);
	}
	if (!strcmp(user, "<token>")) {
		c->identity_token = strdup(secret);
		r = c->identity_token ? 0 : oom(err);
	} else {
		c->username = strdup(user);
		c->password = strdup(secret);
		r = c->username && c->password ? 0 : oom(err);
	}
	json_decref(j);
	return r;
}

/* Ask helper `name` about server.  0 and nothing filled: it has none. */
static sf_ret from_helper(const char *name, const char *server, int timeout_ms,
			  struct sf_creds *c, struct sf_error *err)
{
	char prog[HELPER_NAME_MAX + 32];
	char *out;
	int status = 0;
	sf_ret r;

	if (!valid_helper_name(name))
		return sf_fail(err, EINVAL, "invalid credential helper name \"%.64s\"", name);
	snprintf(prog, sizeof(prog), "docker-credential-%s", name);
	out = malloc(SF_AUTH_HELPER_OUT_MAX + 1);
	if (!out)
		return oom(err);
	r = run_helper(prog, server, timeout_ms, out, SF_AUTH_HELPER_OUT_MAX + 1, &status, err);
	if (r == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 127)
		r = sf_fail(err, ENOENT, "credential helper %s: not found in PATH", prog);
	else if (r == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
		/* the protocol's "no entry" answer; anything else is a failure */
		if (!strstr(out, "credentials not found"))
			r = sf_fail(err, EACCES, "credential helper %s failed for %s (exit status %d)",
				    prog, server, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	} else if (r == 0) {
		r = parse_helper_answer(prog, out, c, err);
	}
	explicit_bzero(out, SF_AUTH_HELPER_OUT_MAX + 1);
	free(out);
	if (r == 0 && sf_creds_present(c) && !(c->source = strdup(prog)))
		r = oom(err);
	return r;
}

/* ---- auth files ---- */

/* "https://index.docker.io/v1/" -> "docker.io"; "http://h:5000/x" -> "h:5000". */
static void normalize_key(const char *key, char *out, size_t len)
{
	const char *p = key, *slash;
	size_t n;

	if (!strncmp(p, "http://", 7))
		p += 7;
	else if (!strncmp(p, "https://", 8))
		p += 8;
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = '\0';
	if (!strcmp(out, "index.docker.io") || !strcmp(out, "registry-1.docker.io"))
		snprintf(out, len, "docker.io");
}

static sf_ret from_entry(json_t *e, const char *file, const char *key, struct sf_creds *c,
			 struct sf_error *err)
{
	const char *auth = json_string_value(json_object_get(e, "auth"));
	const char *tok = json_string_value(json_object_get(e, "identitytoken"));
	sf_ret r = 0;

	if (!json_is_object(e))
		return sf_fail(err, EINVAL, "%s: entry \"%.200s\" is not an object", file, key);
	if (auth && *auth) {
		r = sf_auth_decode_basic(auth, &c->username, &c->password, err);
		if (r < 0) {
			sf_error_prefix(err, "%s: entry \"%.200s\"", file, key);
			return r;
		}
	}
	if (tok && *tok && !(c->identity_token = strdup(tok)))
		return oom(err);
	if (sf_creds_present(c) && !(c->source = strdup(file)))
		return oom(err);
	return 0;
}

/* The "auths" entries: exact keys from the most specific to the host,
 * then legacy URL-form keys that normalise to the host. */
static sf_ret from_auths(json_t *auths, const char *file, bool legacy, const char *registry,
			 const char *repository, struct sf_creds *c, struct sf_error *err)
{
	size_t n = strlen(registry) + strlen(repository) + 2;
	_cleanup_free_ char *key = malloc(n);
	char norm[256];
	const char *k;
	json_t *v;

	if (!key)
		return oom(err);
	snprintf(key, n, "%s/%s", registry, repository);
	for (;;) {
		json_t *e = json_object_get(auths, key);
		char *slash;

		if (e)
			return from_entry(e, file, key, c, err);
		slash = strrchr(key, '/');
		if (!slash || (size_t)(slash - key) < strlen(registry))
			break;
		*slash = '\0';
	}
	json_object_foreach (auths, k, v) {
		/* Only URL-form keys ("https://host/v1/") lose their path, and
		 * in ~/.dockercfg every key (containers/image's
		 * normalizeAuthFileKey): "host/namespace" is an exact-match
		 * key, and cutting it to the host would send that namespace's
		 * login for every other repository of the registry. */
		bool url = !strncmp(k, "http://", 7) || !strncmp(k, "https://", 8);

		if (!url && !legacy && strcmp(k, "index.docker.io") &&
		    strcmp(k, "registry-1.docker.io"))
			continue; /* plain host and namespace keys were looked up above */
		if (!url && !legacy && strchr(k, '/'))
			continue;
		normalize_key(k, norm, sizeof(norm));
		if (!strcmp(norm, registry))
			return from_entry(v, file, k, c, err);
	}
	return 0;
}

static json_t *load_json(const char *file, bool *missing, struct sf_error *err)
{
	struct stat st;
	json_error_t je;
	json_t *j;

	*missing = false;
	if (stat(file, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			*missing = true;
			return NULL;
		}
		sf_fail(err, errno, "%s: %s", file, strerror(errno));
		return NULL;
	}
	if (st.st_size > SF_AUTH_FILE_MAX) {
		sf_fail(err, EFBIG, "%s: larger than %u bytes", file, SF_AUTH_FILE_MAX);
		return NULL;
	}
	j = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		sf_fail(err, EINVAL, "%s: line %d: %s", file, je.line, je.text);
	else if (!json_is_object(j)) {
		json_decref(j);
		sf_fail(err, EINVAL, "%s: not a JSON object", file);
		return NULL;
	}
	return j;
}

/* The server name a helper is asked about: the host, except docker.io,
 * which docker stores under its legacy index URL. */
static const char *helper_server(const char *registry)
{
	return strcmp(registry, "docker.io") ? registry : DOCKER_IO_LEGACY;
}

/* One file.  legacy: ~/.dockercfg, whose top level is the "auths" map. */
static sf_ret from_file(const char *file, bool legacy, const char *registry,
			const char *repository, int timeout_ms, struct sf_creds *c,
			struct sf_error *err)
{
	bool missing;
	json_t *j = load_json(file, &missing, err);
	json_t *auths, *helpers;
	const char *store;
	sf_ret r = 0;

	if (!j)
		return missing ? 0 : -(err && err->code ? err->code : EINVAL);
	helpers = legacy ? NULL : json_object_get(j, "credHelpers");
	auths = legacy ? j : json_object_get(j, "auths");
	store = legacy ? NULL : json_string_value(json_object_get(j, "credsStore"));
	if (helpers && json_is_string(json_object_get(helpers, registry))) {
		r = from_helper(json_string_value(json_object_get(helpers, registry)),
				helper_server(registry), timeout_ms, c, err);
		json_decref(j);
		return r;
	}
	if (auths && json_is_object(auths))
		r = from_auths(auths, file, legacy, registry, repository, c, err);
	else if (auths)
		r = sf_fail(err, EINVAL, "%s: \"auths\" is not an object", file);
	if (r == 0 && !sf_creds_present(c) && store && *store)
		r = from_helper(store, helper_server(registry), timeout_ms, c, err);
	json_decref(j);
	return r;
}

static const char *home_dir(void)
{
	const char *h = getenv("HOME");
	struct passwd *pw;

	if (h && *h)
		return h;
	pw = getpwuid(getuid());
	return pw ? pw->pw_dir : NULL;
}

static sf_ret from_creds_option(const char *s, struct sf_creds *c, struct sf_error *err)
{
	const char *colon = strchr(s, ':');

	if (!colon || colon == s)
		return sf_fail(err, EINVAL, "--creds: expected USER:PASSWORD");
	c->username = strndup(s, (size_t)(colon - s));
	c->password = strdup(colon + 1);
	c->source = strdup("--creds");
	return c->username && c->password && c->source ? 0 : oom(err);
}

#define N_DEFAULT_FILES 4

sf_ret sf_auth_lookup(const struct sf_auth_opts *opts, const char *registry,
		      const char *repository, struct sf_creds *out, struct sf_error *err)
{
	const char *user_file = opts && opts->authfile ? opts->authfile : getenv("REGISTRY_AUTH_FILE");
	const char *home = home_dir(), *xdg_run = getenv("XDG_RUNTIME_DIR");
	const char *xdg_cfg = getenv("XDG_CONFIG_HOME"), *docker_cfg = getenv("DOCKER_CONFIG");
	char files[N_DEFAULT_FILES][4096];
	bool legacy[N_DEFAULT_FILES] = { false };
	int n = 0, tmo = opts && opts->helper_timeout_ms > 0 ? opts->helper_timeout_ms
							   : SF_AUTH_HELPER_TIMEOUT_S * 1000;
	sf_ret r = 0;

	memset(out, 0, sizeof(*out));
	if (opts && opts->creds)
		return from_creds_option(opts->creds, out, err);
	if (opts && opts->authfile && access(opts->authfile, R_OK) < 0)
		/* podman refuses an --authfile it cannot read, too */
		return sf_fail(err, errno, "--authfile %s: %s", opts->authfile, strerror(errno));
	if (user_file && *user_file) {
		r = from_file(user_file, false, registry, repository, tmo, out, err);
		if (r < 0)
			sf_creds_clear(out);
		return r;
	}
	if (xdg_run && *xdg_run)
		snprintf(files[n++], sizeof(files[0]), "%s/containers/auth.json", xdg_run);
	else
		snprintf(files[n++], sizeof(files[0]), "/run/containers/%u/auth.json",
			 (unsigned)getuid());
	if (xdg_cfg && *xdg_cfg)
		snprintf(files[n++], sizeof(files[0]), "%s/containers/auth.json", xdg_cfg);
	else if (home)
		snprintf(files[n++], sizeof(files[0]), "%s/.config/containers/auth.json", home);
	if (docker_cfg && *docker_cfg)
		snprintf(files[n++], sizeof(files[0]), "%s/config.json", docker_cfg);
	else if (home)
		snprintf(files[n++], sizeof(files[0]), "%s/.docker/config.json", home);
	if (home) {
		snprintf(files[n], sizeof(files[0]), "%s/.dockercfg", home);
		legacy[n++] = true;
	}
	for (int i = 0; i < n && r == 0 && !sf_creds_present(out); i++) {
		r = from_file(files[i], legacy[i], registry, repository, tmo, out, err);
	}
	if (r < 0)
		sf_creds_clear(out);
	return r;
}
