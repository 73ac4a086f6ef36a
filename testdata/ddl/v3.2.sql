-- Immich v3.2.x schema subset (tables immich-integrity reads or whose constraints/triggers its repairs fire).
-- = v3.0.sql/v3.1.0 shapes + upstream 1787148183729-ClusterGroups.ts (PR #30739, v3.2.0 tag): cluster_group, cluster_group_request,
--   person_group, person_group_audit, user."clusterGroupId" NOT NULL, person.id dropped -> PK ("ownerId","personGroupId"),
--   asset_face."personId" renamed "personGroupId" (FK -> person_group), person_audit."personId" -> "personGroupId",
--   person_delete_audit trigger now WHEN (pg_trigger_depth() <= 1);
--   + v3.2 user."password" DROP NOT NULL / DEFAULT NULL (from the 3.1->3.2.x structural statements).

-- Omitted: smart_search, face_search (need the pgvector/VectorChord `vector` type), album*, memory*, partner*, session*, shared_link*,
--   tag*, activity, notification, asset_metadata*, asset_ocr*, ocr_search, plugin/workflow*, user_metadata*, geodata, naturalearth,
--   migration_overrides, and (v3.x) asset_video/asset_audio/asset_keyframe/video_stream_*; their FKs into asset/user are therefore absent.
--   Also omitted: asset_exif GiST index "IDX_asset_exif_gist_earthcoord" and ll_to_earth_public() (cube/earthdistance).
-- No kept column uses an extension type. uuid_generate_v4() comes from "uuid-ossp"; the trigram indexes need pg_trgm + unaccent.
-- version_history(id uuid PK default uuid_generate_v4(), "createdAt" timestamptz NOT NULL default now(), version varchar NOT NULL)
--   is created empty: the generator inserts the version row.

CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS "unaccent";
CREATE EXTENSION IF NOT EXISTS "pg_trgm";

-- ---------------------------------------------------------------- functions
CREATE OR REPLACE FUNCTION immich_uuid_v7(p_timestamp timestamp with time zone default clock_timestamp())
  RETURNS uuid
  VOLATILE LANGUAGE SQL
  AS $$
    select encode(
      set_bit(
        set_bit(
          overlay(uuid_send(gen_random_uuid())
                  placing substring(int8send(floor(extract(epoch from p_timestamp) * 1000)::bigint) from 3)
                  from 1 for 6
          ),
          52, 1
        ),
        53, 1
      ),
      'hex')::uuid;
  $$;

CREATE OR REPLACE FUNCTION updated_at()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    DECLARE
        clock_timestamp TIMESTAMP := clock_timestamp();
    BEGIN
        new."updatedAt" = clock_timestamp;
        new."updateId" = immich_uuid_v7(clock_timestamp);
        return new;
    END;
  $$;

CREATE OR REPLACE FUNCTION f_unaccent(text)
  RETURNS text
  PARALLEL SAFE STRICT IMMUTABLE LANGUAGE SQL
  RETURN unaccent('unaccent', $1);

CREATE OR REPLACE FUNCTION user_delete_audit()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      INSERT INTO user_audit ("userId")
      SELECT "id"
      FROM OLD;
      RETURN NULL;
    END
  $$;

CREATE OR REPLACE FUNCTION asset_delete_audit()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      INSERT INTO asset_audit ("assetId", "ownerId")
      SELECT "id", "ownerId"
      FROM OLD;
      RETURN NULL;
    END
  $$;

CREATE OR REPLACE FUNCTION stack_delete_audit()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      INSERT INTO stack_audit ("stackId", "userId")
      SELECT "id", "ownerId"
      FROM OLD;
      RETURN NULL;
    END
  $$;

CREATE OR REPLACE FUNCTION person_delete_audit()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      INSERT INTO person_audit ("personGroupId", "ownerId")
      SELECT "personGroupId", "ownerId"
      FROM OLD;
      RETURN NULL;
    END
  $$;

CREATE OR REPLACE FUNCTION person_group_delete_audit()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      INSERT INTO person_group_audit ("personGroupId", "clusterGroupId")
      SELECT "id", "clusterGroupId"
      FROM OLD;
      RETURN NULL;
    END
  $$;

CREATE OR REPLACE FUNCTION asset_face_audit()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      INSERT INTO asset_face_audit ("assetFaceId", "assetId")
      SELECT "id", "assetId"
      FROM OLD;
      RETURN NULL;
    END
  $$;

CREATE OR REPLACE FUNCTION asset_edit_audit()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      INSERT INTO asset_edit_audit ("editId", "assetId")
      SELECT "id", "assetId"
      FROM OLD;
      RETURN NULL;
    END
  $$;

CREATE OR REPLACE FUNCTION asset_edit_insert()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      UPDATE asset
      SET "isEdited" = true
      FROM inserted_edit
      WHERE asset.id = inserted_edit."assetId" AND NOT asset."isEdited";
      RETURN NULL;
    END
  $$;

CREATE OR REPLACE FUNCTION asset_edit_delete()
  RETURNS TRIGGER
  LANGUAGE PLPGSQL
  AS $$
    BEGIN
      UPDATE asset
      SET "isEdited" = false
      FROM deleted_edit
      WHERE asset.id = deleted_edit."assetId" AND asset."isEdited"
        AND NOT EXISTS (SELECT FROM asset_edit edit WHERE edit."assetId" = asset.id);
      RETURN NULL;
    END
  $$;

-- ---------------------------------------------------------------- enums
CREATE TYPE "assets_status_enum" AS ENUM ('active','trashed','deleted');
CREATE TYPE "sourcetype" AS ENUM ('machine-learning','exif','manual');
CREATE TYPE "asset_visibility_enum" AS ENUM ('archive','timeline','hidden','locked');
CREATE TYPE "asset_checksum_algorithm_enum" AS ENUM ('sha1','sha1-path');

-- ---------------------------------------------------------------- bookkeeping
CREATE TABLE "kysely_migrations" (
  "name" character varying(255) NOT NULL,
  "timestamp" character varying(255) NOT NULL,
  CONSTRAINT "kysely_migrations_pkey" PRIMARY KEY ("name")
);

CREATE TABLE "kysely_migrations_lock" (
  "id" character varying(255) NOT NULL,
  "is_locked" integer NOT NULL DEFAULT 0,
  CONSTRAINT "kysely_migrations_lock_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "version_history" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "version" character varying NOT NULL,
  CONSTRAINT "version_history_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "system_metadata" (
  "key" character varying NOT NULL,
  "value" jsonb NOT NULL,
  CONSTRAINT "system_metadata_pkey" PRIMARY KEY ("key")
);

CREATE TABLE "move_history" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "entityId" uuid NOT NULL,
  "pathType" character varying NOT NULL,
  "oldPath" character varying NOT NULL,
  "newPath" character varying NOT NULL,
  CONSTRAINT "move_history_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "UQ_newPath" UNIQUE ("newPath"),
  CONSTRAINT "UQ_entityId_pathType" UNIQUE ("entityId", "pathType")
);

-- ---------------------------------------------------------------- cluster_group (v3.2, 1787148183729-ClusterGroups)
CREATE TABLE "cluster_group" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "name" character varying,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  CONSTRAINT "cluster_group_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "cluster_group_updateId_idx" ON "cluster_group" ("updateId");
CREATE OR REPLACE TRIGGER "cluster_group_updatedAt"
  BEFORE UPDATE ON "cluster_group"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

-- ---------------------------------------------------------------- user
CREATE TABLE "user" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "email" character varying NOT NULL,
  "password" character varying DEFAULT NULL,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "profileImagePath" character varying NOT NULL DEFAULT '',
  "isAdmin" boolean NOT NULL DEFAULT false,
  "shouldChangePassword" boolean NOT NULL DEFAULT true,
  "deletedAt" timestamp with time zone,
  "oauthId" character varying NOT NULL DEFAULT '',
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "storageLabel" character varying,
  "name" character varying NOT NULL DEFAULT '',
  "quotaSizeInBytes" bigint,
  "quotaUsageInBytes" bigint NOT NULL DEFAULT 0,
  "status" character varying NOT NULL DEFAULT 'active',
  "profileChangedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "avatarColor" character varying,
  "pinCode" character varying,
  "clusterGroupId" uuid NOT NULL,
  CONSTRAINT "user_clusterGroupId_fkey" FOREIGN KEY ("clusterGroupId") REFERENCES "cluster_group" ("id") ON UPDATE CASCADE ON DELETE NO ACTION,
  CONSTRAINT "user_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "user_email_uq" UNIQUE ("email"),
  CONSTRAINT "user_storageLabel_uq" UNIQUE ("storageLabel")
);
CREATE INDEX "user_updateId_idx" ON "user" ("updateId");
CREATE INDEX "user_updatedAt_id_idx" ON "user" ("updatedAt", "id");
CREATE INDEX "user_clusterGroupId_idx" ON "user" ("clusterGroupId");
CREATE OR REPLACE TRIGGER "user_delete_audit"
  AFTER DELETE ON "user"
  REFERENCING OLD TABLE AS "old"
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION user_delete_audit();
CREATE OR REPLACE TRIGGER "user_updatedAt"
  BEFORE UPDATE ON "user"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

CREATE TABLE "user_audit" (
  "userId" uuid NOT NULL,
  "deletedAt" timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  "id" uuid NOT NULL DEFAULT immich_uuid_v7(),
  CONSTRAINT "user_audit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "user_audit_deletedAt_idx" ON "user_audit" ("deletedAt");

CREATE TABLE "cluster_group_request" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "clusterGroupId" uuid NOT NULL,
  "userId" uuid NOT NULL,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT "cluster_group_request_clusterGroupId_fkey" FOREIGN KEY ("clusterGroupId") REFERENCES "cluster_group" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "cluster_group_request_userId_fkey" FOREIGN KEY ("userId") REFERENCES "user" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "cluster_group_request_clusterGroupId_userId_uq" UNIQUE ("clusterGroupId", "userId"),
  CONSTRAINT "cluster_group_request_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "cluster_group_request_clusterGroupId_idx" ON "cluster_group_request" ("clusterGroupId");
CREATE INDEX "cluster_group_request_userId_idx" ON "cluster_group_request" ("userId");

-- ---------------------------------------------------------------- api_key (key is bytea since the api_key/session token hashing migration, pre-v2.6)
CREATE TABLE "api_key" (
  "name" character varying NOT NULL,
  "key" bytea NOT NULL,
  "userId" uuid NOT NULL,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "permissions" character varying[] NOT NULL,
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  CONSTRAINT "api_key_userId_fkey" FOREIGN KEY ("userId") REFERENCES "user" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "api_key_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "api_key_key_idx" ON "api_key" ("key");
CREATE INDEX "api_key_updateId_idx" ON "api_key" ("updateId");
CREATE INDEX "api_key_userId_idx" ON "api_key" ("userId");
CREATE OR REPLACE TRIGGER "api_key_updatedAt"
  BEFORE UPDATE ON "api_key"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

-- ---------------------------------------------------------------- library
CREATE TABLE "library" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "name" character varying NOT NULL,
  "ownerId" uuid NOT NULL,
  "importPaths" text[] NOT NULL,
  "exclusionPatterns" text[] NOT NULL,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "deletedAt" timestamp with time zone,
  "refreshedAt" timestamp with time zone,
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  CONSTRAINT "library_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "user" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "library_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "library_ownerId_idx" ON "library" ("ownerId");
CREATE INDEX "library_updateId_idx" ON "library" ("updateId");
CREATE OR REPLACE TRIGGER "library_updatedAt"
  BEFORE UPDATE ON "library"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

-- ---------------------------------------------------------------- stack (FK to asset added after asset exists)
CREATE TABLE "stack" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "primaryAssetId" uuid NOT NULL,
  "ownerId" uuid NOT NULL,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  CONSTRAINT "stack_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "user" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "stack_primaryAssetId_uq" UNIQUE ("primaryAssetId"),
  CONSTRAINT "stack_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "stack_ownerId_idx" ON "stack" ("ownerId");
CREATE INDEX "stack_primaryAssetId_idx" ON "stack" ("primaryAssetId");
CREATE OR REPLACE TRIGGER "stack_delete_audit"
  AFTER DELETE ON "stack"
  REFERENCING OLD TABLE AS "old"
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION stack_delete_audit();
CREATE OR REPLACE TRIGGER "stack_updatedAt"
  BEFORE UPDATE ON "stack"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

CREATE TABLE "stack_audit" (
  "id" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "stackId" uuid NOT NULL,
  "userId" uuid NOT NULL,
  "deletedAt" timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT "stack_audit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "stack_audit_deletedAt_idx" ON "stack_audit" ("deletedAt");

-- ---------------------------------------------------------------- asset
CREATE TABLE "asset" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "ownerId" uuid NOT NULL,
  "type" character varying NOT NULL,
  "originalPath" character varying NOT NULL,
  "fileCreatedAt" timestamp with time zone NOT NULL,
  "fileModifiedAt" timestamp with time zone NOT NULL,
  "isFavorite" boolean NOT NULL DEFAULT false,
  "duration" integer,
  "checksum" bytea NOT NULL,
  "livePhotoVideoId" uuid,
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "originalFileName" character varying NOT NULL,
  "thumbhash" bytea,
  "isOffline" boolean NOT NULL DEFAULT false,
  "libraryId" uuid,
  "isExternal" boolean NOT NULL DEFAULT false,
  "deletedAt" timestamp with time zone,
  "localDateTime" timestamp with time zone NOT NULL,
  "stackId" uuid,
  "duplicateId" uuid,
  "status" assets_status_enum NOT NULL DEFAULT 'active',
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "visibility" asset_visibility_enum NOT NULL DEFAULT 'timeline',
  "width" integer,
  "height" integer,
  "isEdited" boolean NOT NULL DEFAULT false,
  "checksumAlgorithm" asset_checksum_algorithm_enum NOT NULL,
  CONSTRAINT "asset_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "user" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "asset_livePhotoVideoId_fkey" FOREIGN KEY ("livePhotoVideoId") REFERENCES "asset" ("id") ON UPDATE CASCADE ON DELETE SET NULL,
  CONSTRAINT "asset_libraryId_fkey" FOREIGN KEY ("libraryId") REFERENCES "library" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "asset_stackId_fkey" FOREIGN KEY ("stackId") REFERENCES "stack" ("id") ON UPDATE CASCADE ON DELETE SET NULL,
  CONSTRAINT "asset_pkey" PRIMARY KEY ("id")
);
-- checksum uniqueness: per owner for uploads (libraryId NULL), per owner+library for external assets
CREATE UNIQUE INDEX "UQ_assets_owner_checksum" ON "asset" ("ownerId", "checksum") WHERE ("libraryId" IS NULL);
CREATE UNIQUE INDEX "asset_ownerId_libraryId_checksum_idx" ON "asset" ("ownerId", "libraryId", "checksum") WHERE ("libraryId" IS NOT NULL);
CREATE INDEX "asset_checksum_idx" ON "asset" ("checksum");
CREATE INDEX "asset_createdAt_idx" ON "asset" ("createdAt");
CREATE INDEX "asset_duplicateId_idx" ON "asset" ("duplicateId");
CREATE INDEX "asset_fileCreatedAt_idx" ON "asset" ("fileCreatedAt");
CREATE INDEX "asset_id_stackId_idx" ON "asset" ("id", "stackId");
CREATE INDEX "asset_id_timeline_notDeleted_idx" ON "asset" ("id") WHERE visibility = 'timeline' AND "deletedAt" IS NULL;
CREATE INDEX "asset_libraryId_idx" ON "asset" ("libraryId");
CREATE INDEX "asset_livePhotoVideoId_idx" ON "asset" ("livePhotoVideoId");
CREATE INDEX "asset_localDateTime_idx" ON "asset" ((("localDateTime" at time zone 'UTC')::date));
CREATE INDEX "asset_localDateTime_month_idx" ON "asset" ((date_trunc('MONTH'::text, ("localDateTime" AT TIME ZONE 'UTC'::text)) AT TIME ZONE 'UTC'::text));
CREATE INDEX "asset_originalFileName_idx" ON "asset" ("originalFileName");
CREATE INDEX "asset_originalFilename_trigram_idx" ON "asset" USING gin (f_unaccent("originalFileName") gin_trgm_ops);
CREATE INDEX "asset_originalPath_libraryId_idx" ON "asset" ("originalPath", "libraryId");
CREATE INDEX "asset_ownerId_idx" ON "asset" ("ownerId");
CREATE INDEX "asset_stackId_idx" ON "asset" ("stackId");
CREATE INDEX "asset_updateId_idx" ON "asset" ("updateId");
CREATE OR REPLACE TRIGGER "asset_delete_audit"
  AFTER DELETE ON "asset"
  REFERENCING OLD TABLE AS "old"
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION asset_delete_audit();
CREATE OR REPLACE TRIGGER "asset_updatedAt"
  BEFORE UPDATE ON "asset"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

ALTER TABLE "stack" ADD CONSTRAINT "stack_primaryAssetId_fkey" FOREIGN KEY ("primaryAssetId") REFERENCES "asset" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION;

CREATE TABLE "asset_audit" (
  "id" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "assetId" uuid NOT NULL,
  "ownerId" uuid NOT NULL,
  "deletedAt" timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT "asset_audit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "asset_audit_assetId_idx" ON "asset_audit" ("assetId");
CREATE INDEX "asset_audit_deletedAt_idx" ON "asset_audit" ("deletedAt");
CREATE INDEX "asset_audit_ownerId_idx" ON "asset_audit" ("ownerId");

-- ---------------------------------------------------------------- asset_exif
CREATE TABLE "asset_exif" (
  "assetId" uuid NOT NULL,
  "make" character varying,
  "model" character varying,
  "exifImageWidth" integer,
  "exifImageHeight" integer,
  "fileSizeInByte" bigint,
  "orientation" character varying,
  "dateTimeOriginal" timestamp with time zone,
  "modifyDate" timestamp with time zone,
  "lensModel" character varying,
  "fNumber" double precision,
  "focalLength" double precision,
  "iso" integer,
  "latitude" double precision,
  "longitude" double precision,
  "city" character varying,
  "state" character varying,
  "country" character varying,
  "description" text NOT NULL DEFAULT '',
  "fps" double precision,
  "exposureTime" character varying,
  "livePhotoCID" character varying,
  "timeZone" character varying,
  "projectionType" character varying,
  "profileDescription" character varying,
  "colorspace" character varying,
  "bitsPerSample" integer,
  "autoStackId" character varying,
  "rating" integer,
  "updatedAt" timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "lockedProperties" character varying[],
  "tags" character varying[],
  CONSTRAINT "asset_exif_assetId_fkey" FOREIGN KEY ("assetId") REFERENCES "asset" ("id") ON UPDATE NO ACTION ON DELETE CASCADE,
  CONSTRAINT "asset_exif_pkey" PRIMARY KEY ("assetId")
);
CREATE INDEX "asset_exif_autoStackId_idx" ON "asset_exif" ("autoStackId");
CREATE INDEX "asset_exif_city_idx" ON "asset_exif" ("city");
CREATE INDEX "asset_exif_livePhotoCID_idx" ON "asset_exif" ("livePhotoCID");
CREATE INDEX "asset_exif_updateId_idx" ON "asset_exif" ("updateId");
CREATE OR REPLACE TRIGGER "asset_exif_updatedAt"
  BEFORE UPDATE ON "asset_exif"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

-- ---------------------------------------------------------------- asset_file
CREATE TABLE "asset_file" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "assetId" uuid NOT NULL,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "type" character varying NOT NULL,
  "path" character varying NOT NULL,
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "isEdited" boolean NOT NULL DEFAULT false,
  "isProgressive" boolean NOT NULL DEFAULT false,
  "isTransparent" boolean NOT NULL DEFAULT false,
  CONSTRAINT "asset_file_assetId_fkey" FOREIGN KEY ("assetId") REFERENCES "asset" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "asset_file_assetId_type_isEdited_uq" UNIQUE ("assetId", "type", "isEdited"),
  CONSTRAINT "asset_file_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "asset_file_assetId_idx" ON "asset_file" ("assetId");
CREATE INDEX "asset_file_updateId_idx" ON "asset_file" ("updateId");
CREATE OR REPLACE TRIGGER "asset_file_updatedAt"
  BEFORE UPDATE ON "asset_file"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

-- ---------------------------------------------------------------- asset_job_status
CREATE TABLE "asset_job_status" (
  "assetId" uuid NOT NULL,
  "facesRecognizedAt" timestamp with time zone,
  "metadataExtractedAt" timestamp with time zone,
  "duplicatesDetectedAt" timestamp with time zone,
  "ocrAt" timestamp with time zone,
  CONSTRAINT "asset_job_status_assetId_fkey" FOREIGN KEY ("assetId") REFERENCES "asset" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "asset_job_status_pkey" PRIMARY KEY ("assetId")
);

-- ---------------------------------------------------------------- asset_edit
CREATE TABLE "asset_edit" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "assetId" uuid NOT NULL,
  "action" character varying NOT NULL,
  "parameters" jsonb NOT NULL,
  "sequence" integer NOT NULL,
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  CONSTRAINT "asset_edit_assetId_fkey" FOREIGN KEY ("assetId") REFERENCES "asset" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "asset_edit_assetId_sequence_uq" UNIQUE ("assetId", "sequence"),
  CONSTRAINT "asset_edit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "asset_edit_assetId_idx" ON "asset_edit" ("assetId");
CREATE INDEX "asset_edit_updateId_idx" ON "asset_edit" ("updateId");
CREATE OR REPLACE TRIGGER "asset_edit_audit"
  AFTER DELETE ON "asset_edit"
  REFERENCING OLD TABLE AS "old"
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION asset_edit_audit();
CREATE OR REPLACE TRIGGER "asset_edit_delete"
  AFTER DELETE ON "asset_edit"
  REFERENCING OLD TABLE AS "deleted_edit"
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION asset_edit_delete();
CREATE OR REPLACE TRIGGER "asset_edit_insert"
  AFTER INSERT ON "asset_edit"
  REFERENCING NEW TABLE AS "inserted_edit"
  FOR EACH STATEMENT
  EXECUTE FUNCTION asset_edit_insert();
CREATE OR REPLACE TRIGGER "asset_edit_updatedAt"
  BEFORE UPDATE ON "asset_edit"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

CREATE TABLE "asset_edit_audit" (
  "id" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "editId" uuid NOT NULL,
  "assetId" uuid NOT NULL,
  "deletedAt" timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT "asset_edit_audit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "asset_edit_audit_assetId_idx" ON "asset_edit_audit" ("assetId");
CREATE INDEX "asset_edit_audit_deletedAt_idx" ON "asset_edit_audit" ("deletedAt");

-- ---------------------------------------------------------------- person_group (v3.2)
CREATE TABLE "person_group" (
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "clusterGroupId" uuid NOT NULL,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "createId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  CONSTRAINT "person_group_clusterGroupId_fkey" FOREIGN KEY ("clusterGroupId") REFERENCES "cluster_group" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "person_group_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "person_group_clusterGroupId_idx" ON "person_group" ("clusterGroupId");
CREATE INDEX "person_group_createId_idx" ON "person_group" ("createId");
CREATE INDEX "person_group_updateId_idx" ON "person_group" ("updateId");
CREATE OR REPLACE TRIGGER "person_group_delete_audit"
  AFTER DELETE ON "person_group"
  REFERENCING OLD TABLE AS "old"
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION person_group_delete_audit();
CREATE OR REPLACE TRIGGER "person_group_updatedAt"
  BEFORE UPDATE ON "person_group"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

CREATE TABLE "person_group_audit" (
  "id" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "personGroupId" uuid NOT NULL,
  "clusterGroupId" uuid NOT NULL,
  "deletedAt" timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT "person_group_audit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "person_group_audit_personGroupId_idx" ON "person_group_audit" ("personGroupId");
CREATE INDEX "person_group_audit_clusterGroupId_idx" ON "person_group_audit" ("clusterGroupId");
CREATE INDEX "person_group_audit_deletedAt_idx" ON "person_group_audit" ("deletedAt");

-- ---------------------------------------------------------------- asset_face (person FK added below)
CREATE TABLE "asset_face" (
  "assetId" uuid NOT NULL,
  "personGroupId" uuid,
  "imageWidth" integer NOT NULL DEFAULT 0,
  "imageHeight" integer NOT NULL DEFAULT 0,
  "boundingBoxX1" integer NOT NULL DEFAULT 0,
  "boundingBoxY1" integer NOT NULL DEFAULT 0,
  "boundingBoxX2" integer NOT NULL DEFAULT 0,
  "boundingBoxY2" integer NOT NULL DEFAULT 0,
  "id" uuid NOT NULL DEFAULT uuid_generate_v4(),
  "sourceType" sourcetype NOT NULL DEFAULT 'machine-learning',
  "deletedAt" timestamp with time zone,
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "isVisible" boolean NOT NULL DEFAULT true,
  CONSTRAINT "asset_face_assetId_fkey" FOREIGN KEY ("assetId") REFERENCES "asset" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "asset_face_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "asset_face_personGroupId_assetId_idx" ON "asset_face" ("personGroupId", "assetId");
CREATE INDEX "asset_face_personGroupId_assetId_notDeleted_isVisible_idx" ON "asset_face" ("personGroupId", "assetId") WHERE ("deletedAt" IS NULL AND "isVisible" IS TRUE);
CREATE INDEX "asset_face_assetId_personGroupId_idx" ON "asset_face" ("assetId", "personGroupId");
CREATE OR REPLACE TRIGGER "asset_face_audit"
  AFTER DELETE ON "asset_face"
  REFERENCING OLD TABLE AS "old"
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION asset_face_audit();
CREATE OR REPLACE TRIGGER "asset_face_updatedAt"
  BEFORE UPDATE ON "asset_face"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

CREATE TABLE "asset_face_audit" (
  "id" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "assetFaceId" uuid NOT NULL,
  "assetId" uuid NOT NULL,
  "deletedAt" timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT "asset_face_audit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "asset_face_audit_assetFaceId_idx" ON "asset_face_audit" ("assetFaceId");
CREATE INDEX "asset_face_audit_assetId_idx" ON "asset_face_audit" ("assetId");
CREATE INDEX "asset_face_audit_deletedAt_idx" ON "asset_face_audit" ("deletedAt");

-- ---------------------------------------------------------------- person
CREATE TABLE "person" (
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "ownerId" uuid NOT NULL,
  "name" character varying NOT NULL DEFAULT '',
  "thumbnailPath" character varying NOT NULL DEFAULT '',
  "isHidden" boolean NOT NULL DEFAULT false,
  "birthDate" date,
  "faceAssetId" uuid,
  "isFavorite" boolean NOT NULL DEFAULT false,
  "color" character varying,
  "updateId" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "personGroupId" uuid NOT NULL,
  CONSTRAINT "person_personGroupId_fkey" FOREIGN KEY ("personGroupId") REFERENCES "person_group" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "person_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "user" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "person_faceAssetId_fkey" FOREIGN KEY ("faceAssetId") REFERENCES "asset_face" ("id") ON UPDATE NO ACTION ON DELETE SET NULL,
  CONSTRAINT "person_birthDate_chk" CHECK ("birthDate" <= CURRENT_DATE),
  CONSTRAINT "person_pkey" PRIMARY KEY ("ownerId", "personGroupId")
);
CREATE INDEX "person_faceAssetId_idx" ON "person" ("faceAssetId");
CREATE INDEX "person_personGroupId_idx" ON "person" ("personGroupId");
CREATE INDEX "person_updateId_idx" ON "person" ("updateId");
CREATE INDEX "idx_person_name_trigram" ON "person" USING gin (f_unaccent("name") gin_trgm_ops);
CREATE OR REPLACE TRIGGER "person_delete_audit"
  AFTER DELETE ON "person"
  REFERENCING OLD TABLE AS "old"
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() <= 1)
  EXECUTE FUNCTION person_delete_audit();
CREATE OR REPLACE TRIGGER "person_updatedAt"
  BEFORE UPDATE ON "person"
  FOR EACH ROW
  EXECUTE FUNCTION updated_at();

ALTER TABLE "asset_face" ADD CONSTRAINT "asset_face_personGroupId_fkey" FOREIGN KEY ("personGroupId") REFERENCES "person_group" ("id") ON UPDATE CASCADE ON DELETE SET NULL;

CREATE TABLE "person_audit" (
  "id" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "ownerId" uuid NOT NULL,
  "deletedAt" timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  "personGroupId" uuid NOT NULL,
  CONSTRAINT "person_audit_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "person_audit_ownerId_idx" ON "person_audit" ("ownerId");
CREATE INDEX "person_audit_deletedAt_idx" ON "person_audit" ("deletedAt");
CREATE INDEX "person_audit_personGroupId_idx" ON "person_audit" ("personGroupId");

-- ---------------------------------------------------------------- integrity_report (v3.0, 1781089983296-CreateIntegrityReportTable)
-- "type" is a varchar holding enum IntegrityReport values: 'untracked_file' | 'missing_file' | 'checksum_mismatch'.
-- Deleting the asset_file (or asset) a row points at deletes the row (ON DELETE CASCADE).
CREATE TABLE "integrity_report" (
  "id" uuid NOT NULL DEFAULT immich_uuid_v7(),
  "type" character varying NOT NULL,
  "path" character varying NOT NULL,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "assetId" uuid,
  "fileAssetId" uuid,
  CONSTRAINT "integrity_report_assetId_fkey" FOREIGN KEY ("assetId") REFERENCES "asset" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "integrity_report_fileAssetId_fkey" FOREIGN KEY ("fileAssetId") REFERENCES "asset_file" ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  CONSTRAINT "integrity_report_type_path_uq" UNIQUE ("type", "path"),
  CONSTRAINT "integrity_report_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "integrity_report_assetId_idx" ON "integrity_report" ("assetId");
CREATE INDEX "integrity_report_fileAssetId_idx" ON "integrity_report" ("fileAssetId");

-- ---------------------------------------------------------------- migration ledger
-- A real database lists every migration since 1744910873969-InitialMigration (~140+ rows); this is a SUBSET (ascending, as kysely
-- requires). Sources: InitialMigration/StandardizeNames/ConvertToAbsolutePaths/EncodedVideoAssetFiles/AddChecksumAlgorithm read from
-- immich-app/immich; 1775165531374..1781089983296 from upgrade logs v2.7.5 -> v3.0.0 (issues #29445, #29540) and a fork's revert
-- script; 1787148183729-ClusterGroups cited at the v3.2.0 tag; 1764698859174, 1764957138636, 1768336661963, 1768757482271,
-- 1768828334807, 1768847456553, 1772121424533, 1774393726320 only from third-party notes citing the v2.7.5 tag (not read directly).
-- v3.1.x migrations (between 1781089983296 and 1787148183729) are not listed: their names were not found. Kysely's FileMigrationProvider strips only the last extension, so the v2.7 file
-- 1774548649115-AddChecksumAlgorithm.ts.ts is recorded as '1774548649115-AddChecksumAlgorithm.ts'.
INSERT INTO "kysely_migrations_lock" ("id", "is_locked") VALUES ('migration_lock', 0);
INSERT INTO "kysely_migrations" ("name", "timestamp") VALUES
  ('1744910873969-InitialMigration', '2026-09-12T08:00:00.000Z'),
  ('1752267649968-StandardizeNames', '2026-09-12T08:00:00.000Z'),
  ('1752759108283-ConvertToAbsolutePaths', '2026-09-12T08:00:00.000Z'),
  ('1764698859174-SidecarInAssetFile', '2026-09-12T08:00:00.000Z'),
  ('1764957138636-AddLockedPropertiesToAssetExif', '2026-09-12T08:00:00.000Z'),
  ('1768336661963-AddAssetWidthHeight', '2026-09-12T08:00:00.000Z'),
  ('1768757482271-SwitchToIsEdited', '2026-09-12T08:00:00.000Z'),
  ('1768828334807-AddIsEditedToAssetFile', '2026-09-12T08:00:00.000Z'),
  ('1768847456553-AddTagsToExif', '2026-09-12T08:00:00.000Z'),
  ('1772121424533-AddAssetExifGistEarthcoord', '2026-09-12T08:00:00.000Z'),
  ('1773242919341-EncodedVideoAssetFiles', '2026-09-12T08:00:00.000Z'),
  ('1774393726320-AssetFaceSyncReset', '2026-09-12T08:00:00.000Z'),
  ('1774548649115-AddChecksumAlgorithm.ts', '2026-09-12T08:00:00.000Z'),
  ('1775165531374-AddPersonNameTrigramIndex', '2026-09-12T08:00:00.000Z'),
  ('1776217577402-DropAuditTable', '2026-09-12T08:00:00.000Z'),
  ('1776263790468-DropDeviceIdAndDeviceAssetId', '2026-09-12T08:00:00.000Z'),
  ('1776332807985-SetOAuthAllowInsecureRequests', '2026-09-12T08:00:00.000Z'),
  ('1776442031775-AddOauthSidToSession', '2026-09-12T08:00:00.000Z'),
  ('1776792304485-ReconcileSqlToolsUpgradeChanges', '2026-09-12T08:00:00.000Z'),
  ('1776848612954-MigrateAlbumOwnerIdToAlbumUser', '2026-09-12T08:00:00.000Z'),
  ('1777415973792-AddVideoStreamTables', '2026-09-12T08:00:00.000Z'),
  ('1777654048096-CreateAudioVideoTables', '2026-09-12T08:00:00.000Z'),
  ('1777667825574-ChangeDurationToInteger', '2026-09-12T08:00:00.000Z'),
  ('1777897107000-PartnerAssetSyncReset', '2026-09-12T08:00:00.000Z'),
  ('1778614946174-UpdateWorkflowTables', '2026-09-12T08:00:00.000Z'),
  ('1779806699547-AddPluginTemplates', '2026-09-12T08:00:00.000Z'),
  ('1780435471692-DeleteMismatchedAssetFaces', '2026-09-12T08:00:00.000Z'),
  ('1780592070031-ConvertNegativeRatingToNull', '2026-09-12T08:00:00.000Z'),
  ('1780592071031-AssetOcrSync', '2026-09-12T08:00:00.000Z'),
  ('1781089983296-CreateIntegrityReportTable', '2026-09-12T08:00:00.000Z'),
  ('1787148183729-ClusterGroups', '2026-09-12T08:00:00.000Z');
