/* conffile.c - see conffile.h. */
#include "conffile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static int fail(const struct sf_config *c, unsigned line, const char *what)
{
	if (line)
		fprintf(stderr, "soci-fuse: %s:%u: %s\n", c->path, line, what);
	else
		fprintf(stderr, "soci-fuse: %s: %s\n", c->path, what);
	return 2;
}

/* The whole file into c->text, NUL-terminated. */
static int read_file(struct sf_config *c, int fd)
{
	size_t len = 0;
	ssize_t n;

	c->text = malloc(SF_CONFIG_MAX_SIZE + 1);
	if (!c->text)
		return fail(c, 0, "out of memory");
	while ((n = read(fd, c->text + len, SF_CONFIG_MAX_SIZE + 1 - len)) > 0)
		len += (size_t)n;
	if (n < 0)
		return fail(c, 0, strerror(errno));
	if (len > SF_CONFIG_MAX_SIZE)
		return fail(c, 0, "larger than 64 KiB: not a config file");
	c->text[len] = '\0';
	return 0;
}

/* Split "name = value" lines in place. */
static int split(struct sf_config *c)
{
	unsigned line = 0;

	for (char *p = c->text, *next; p; p = next) {
		char *hash, *eq, *name;

		line++;
		next = strchr(p, '\n');
		if (next)
			*next++ = '\0';
		if ((hash = strchr(p, '#')))
			*hash = '\0';
		p = trim(p);
		if (!*p)
			continue;
		eq = strchr(p, '=');
		if (eq)
			*eq = '\0';
		name = trim(p);
		if (!*name || strspn(name, "abcdefghijklmnopqrstuvwxyz-") != strlen(name))
			return fail(c, line, "expected 'name = value' with a mount option's name");
		c->items[c->n++] = (struct sf_config_item){ .name = name,
							    .value = eq ? trim(eq + 1) : NULL,
							    .line = line };
	}
	return 0;
}

int sf_config_load(struct sf_config *c)
{
	const char *env = getenv("SOCI_FUSE_CONFIG");
	size_t lines = 1;
	int fd, rc;

	*c = (struct sf_config){ 0 };
	c->path = env && *env ? env : SF_CONFIG_PATH;
	fd = open(c->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && !(env && *env)) {
			c->path = NULL; /* no default file: nothing to do */
			return 0;
		}
		return fail(c, 0, strerror(errno)); /* a file asked for must be there */
	}
	rc = read_file(c, fd);
	close(fd);
	if (rc)
		return rc;
	for (const char *p = c->text; *p; p++)
		lines += *p == '\n';
	c->items = calloc(lines, sizeof(*c->items));
	if (!c->items)
		return fail(c, 0, "out of memory");
	return split(c);
}

void sf_config_free(struct sf_config *c)
{
	free(c->text);
	free(c->items);
	*c = (struct sf_config){ 0 };
}
