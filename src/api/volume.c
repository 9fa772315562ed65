/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the volume API lands. */
#include <errno.h>

#include "api.h"

void api_volume_routes(Api *a) {}
int api_volume_start(Api *a, SovBuf *err)
{
    return 0;
}
void api_volume_stop(Api *a) {}
void api_block_kick(Api *a) {}
int api_volume_create_for(ApiCall *c, const char *name, int64_t size_gb, const char *image_id,
                          const char *zone, char out_id[API_UUID_LEN + 1])
{
    api_fault(c, 501, NULL, "volumes are not implemented yet");
    return -ENOSYS;
}
int api_volume_attach(Api *a, const char *project_id, const char *volume_id,
                      const char *server_id, const char *device)
{
    return -ENOENT;
}
int api_volume_detach(Api *a, const char *project_id, const char *volume_id,
                      const char *server_id)
{
    return -ENOENT;
}
int api_volume_delete_for(Api *a, const char *volume_id)
{
    return -ENOENT;
}
