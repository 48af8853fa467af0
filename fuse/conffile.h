/* conffile.h - defaults for the mount options, from a file.
 *
 * An operator sets chunk size, connection counts, cache dir, limits... for
 * every soci-fuse command on a node in one place instead of in each unit
 * or script: $SOCI_FUSE_CONFIG, or SF_CONFIG_PATH when it exists.  Lines
 * are "name = value" (or a bare "name" for a flag) with the long option
 * names of mount (`connections = 32`); '#' starts a comment.  Options on
 * the command line override the file.  Parsing only; main.c applies them
 * exactly as it applies the command line.
 */
#ifndef SF_CONFFILE_H
#define SF_CONFFILE_H

#include <stddef.h>

#define SF_CONFIG_PATH "/etc/soci-fuse/soci-fuse.conf"
#define SF_CONFIG_MAX_SIZE (64 * 1024) /* a config file, not a data file */

struct sf_config_item {
	const char *name;  /* into text */
	const char *value; /* into text; NULL for a bare name */
	unsigned line;
};

struct sf_config {
	const char *path; /* borrowed (environment or SF_CONFIG_PATH); NULL: no file */
	char *text;
	struct sf_config_item *items;
	size_t n;
};

/* Read and split the config file.  Returns 0 (no file is no error), or 2
 * after printing one line naming the file (and line). */
int sf_config_load(struct sf_config *c);
void sf_config_free(struct sf_config *c);

#endif
