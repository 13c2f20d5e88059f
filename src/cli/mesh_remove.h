/* mesh_remove.h — `odsync mesh remove`: retire a node from a running mesh (mesh_remove.c,
 * docs/MULTI_MASTER.md "Removing a node from a running mesh"). */
#ifndef ODSYNC_MESH_REMOVE_H
#define ODSYNC_MESH_REMOVE_H

/* `odsync mesh remove [-c FILE] [--timeout S] [--force] NODE` (argv starts at "remove"). Returns the
 * exit status: 0 removed (or already removed), 1 the removal failed (what it did is safe to redo:
 * run it again), 2 usage or config. */
int od_cli_mesh_remove(int argc, char **argv);

#endif
