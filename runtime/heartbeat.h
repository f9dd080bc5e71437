/* heartbeat.h — dead-rank detection outside MPI (heartbeat.c says how). */
#ifndef MS_HEARTBEAT_H
#define MS_HEARTBEAT_H

#include <mpi.h>

#include "status.h"

typedef struct hb hb_t;

/* Collective over `world`, after MPI_Init: rank 0 listens, every other rank
 * connects, then each side starts its thread (none with one rank). Once
 * armed, a rank that dies makes rank 0 call shutdown_peer_died within a few
 * milliseconds (its socket closes) or 5 s (silence). */
ms_status_t hb_start(MPI_Comm world, hb_t **out);
/* Serving starts: from now a dead peer is reported (rank 0). */
void hb_arm(hb_t *h);
/* Orderly shutdown ahead: workers exiting is no longer a death. */
void hb_disarm(hb_t *h);
void hb_destroy(hb_t *h);

#endif
