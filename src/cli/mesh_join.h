/* mesh_join.h — `odsync mesh join`: add a node to a running mesh with its initial copy
 * (mesh_join.c, docs/MULTI_MASTER.md "Adding a node to a running mesh"). */
#ifndef ODSYNC_MESH_JOIN_H
#define ODSYNC_MESH_JOIN_H

/* `odsync mesh join [-c FILE] NODE` (argv after "mesh"; `mesh remove ...` goes to mesh_remove.c). Returns the exit status: 0 joined (or
 * already joined), 1 the join failed (nothing half-done on NODE: run it again), 2 usage. */
int od_cli_mesh(int argc, char **argv);

#endif
