/* SPDX-License-Identifier: Apache-2.0 */
/* What lifecycle.c (rules, restores, storage classes) shares with lcworker.c (the worker). */
#ifndef SOV_S3_LIFECYCLE_INT_H
#define SOV_S3_LIFECYCLE_INT_H

#include <stdbool.h>
#include <stdint.h>

/* Colder classes rank higher (STANDARD 0 ... DEEP_ARCHIVE 6); unknown names rank 0. */
int s3_storage_class_rank(const char *name);
/* GLACIER and DEEP_ARCHIVE: reads need a restore. */
bool s3_storage_class_archived(const char *name);
/* The restore expiry (ms) recorded in an object's metadata JSON, 0 when there is none. */
int64_t s3_restore_expiry(const char *meta_json);

#endif
