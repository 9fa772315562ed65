/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the image API lands. */
#include "api.h"

void api_image_routes(Api *a) {}
int api_image_start(Api *a, SovBuf *err)
{
    return 0;
}
void api_image_stop(Api *a) {}
