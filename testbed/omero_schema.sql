-- An OMERO 5.4-shaped database: the subset of tables omero-storagemanager reads, plus
-- what their NOT NULL foreign keys require.
--
-- Source of truth: ome/openmicroscopy, sql/psql/OMERO5.4__0/schema.sql (the DDL of the
-- database schema OMERO5.4__0, which OMERO.server 5.4 to 5.6 use), psql-header.sql (the
-- domains and unit types) and psql-footer.sql (sequences, ome_nextval(), the columns and
-- indexes added after the generated DDL: pixels.path/name/repo, originalfile.repo as
-- varchar(36), originalfile_repo_path_index, well_col_row, the configuration table).
--
-- Table and column names, types, NOT NULL, primary keys and unique constraints are
-- OMERO's, copied for every table kept here (OMERO writes camelCase identifiers
-- unquoted: PostgreSQL folds them to lower case, as here). Left out on purpose:
--   * the tables nothing here needs (instruments, ROIs, rendering settings, ...), and
--     the foreign keys that would point at them (image.format, image.instrument,
--     wellsample.plateacquisition, ...): the columns are kept, nullable as in OMERO;
--   * externalinfo and the external_id foreign keys to it (always NULL in practice);
--   * the count_* tables, the full-text triggers (_reindexing_required) and the many
--     plain indexes.
-- Load it into an empty database with testbed.omerodb.load_schema().

CREATE DOMAIN nonnegative_int AS INTEGER CHECK (VALUE >= 0);
CREATE DOMAIN nonnegative_float AS DOUBLE PRECISION CHECK (VALUE >= 0);
CREATE DOMAIN positive_int AS INTEGER CHECK (VALUE > 0);
CREATE DOMAIN positive_float AS DOUBLE PRECISION CHECK (VALUE > 0);
CREATE DOMAIN percent_fraction AS DOUBLE PRECISION CHECK (VALUE >= 0 AND VALUE <= 1);

CREATE TYPE UnitsLength AS ENUM ('Ym','Zm','Em','Pm','Tm','Gm','Mm','km','hm','dam','m','dm','cm','mm','µm','nm','pm','fm','am','zm','ym','Å','ua','ly','pc','thou','li','in','ft','yd','mi','pt','pixel','reference frame');
CREATE TYPE UnitsTime AS ENUM ('Ys','Zs','Es','Ps','Ts','Gs','Ms','ks','hs','das','s','ds','cs','ms','µs','ns','ps','fs','as','zs','ys','min','h','d');

------------------------------------------------------------------------------------------
-- Enumerations (rows inserted by testbed.omerodb, as psql-footer.sql does)
------------------------------------------------------------------------------------------

create table checksumalgorithm (
    id int8 not null,
    permissions int8 not null,
    value varchar(255) not null unique,
    external_id int8 unique,
    primary key (id)
);

create table dimensionorder (
    id int8 not null,
    permissions int8 not null,
    value varchar(255) not null unique,
    external_id int8 unique,
    primary key (id)
);

create table eventtype (
    id int8 not null,
    permissions int8 not null,
    value varchar(255) not null unique,
    external_id int8 unique,
    primary key (id)
);

create table jobstatus (
    id int8 not null,
    permissions int8 not null,
    value varchar(255) not null unique,
    external_id int8 unique,
    primary key (id)
);

create table pixelstype (
    id int8 not null,
    bitSize int4,
    permissions int8 not null,
    value varchar(255) not null unique,
    external_id int8 unique,
    primary key (id)
);

------------------------------------------------------------------------------------------
-- Users, groups, sessions, events
------------------------------------------------------------------------------------------

create table experimenter (
    id int8 not null,
    permissions int8 not null,
    email varchar(255),
    firstName varchar(255) not null,
    institution varchar(255),
    lastName varchar(255) not null,
    ldap bool not null default false,
    middleName varchar(255),
    omeName varchar(255) not null unique,
    version int4,
    external_id int8 unique,
    primary key (id)
);

-- Experimenter.config (OMERO 5.4+): a restricted admin's missing privileges are rows
-- ("AdminPrivilege:<name>", "false"), as the server's LightAdminPrivileges reads them.
create table experimenter_config (
    experimenter_id int8 not null references experimenter,
    name varchar(255) not null,
    value varchar(255) not null,
    index int4 not null,
    primary key (experimenter_id, index)
);

create table experimentergroup (
    id int8 not null,
    description text,
    permissions int8 not null,
    ldap bool not null default false,
    name varchar(255) not null unique,
    version int4,
    external_id int8 unique,
    primary key (id)
);

create table groupexperimentermap (
    id int8 not null,
    permissions int8 not null,
    owner bool not null,
    version int4,
    child int8 not null,
    external_id int8 unique,
    parent int8 not null,
    child_index int4 not null,
    primary key (id),
    unique (parent, child),
    unique (child, child_index)
);

create table node (
    id int8 not null,
    conn text not null,
    permissions int8 not null,
    down timestamp,
    scale int4,
    up timestamp not null,
    uuid varchar(255) not null unique,
    version int4,
    external_id int8 unique,
    primary key (id)
);

create table session (
    id int8 not null,
    closed timestamp,
    defaultEventType varchar(255) not null,
    permissions int8 not null,
    message text,
    started timestamp not null,
    timeToIdle int8 not null,
    timeToLive int8 not null,
    userAgent varchar(255),
    userIP varchar(45),
    uuid varchar(255) not null unique,
    version int4,
    external_id int8 unique,
    node int8 not null,
    owner int8 not null,
    sudoer int8,
    primary key (id)
);

create table event (
    id int8 not null,
    permissions int8 not null,
    status varchar(255),
    time timestamp not null,
    containingEvent int8,
    external_id int8 unique,
    experimenter int8 not null,
    experimenterGroup int8 not null,
    "session" int8 not null,
    type int8 not null,
    primary key (id)
);

------------------------------------------------------------------------------------------
-- Files, filesets, import jobs
------------------------------------------------------------------------------------------

create table originalfile (
    id int8 not null,
    atime timestamp,
    ctime timestamp,
    permissions int8 not null,
    hash text,
    mimetype varchar(255) default 'application/octet-stream',
    mtime timestamp,
    name text not null,
    path text not null,
    repo varchar(36),
    "size" int8,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    hasher int8,
    primary key (id)
);

create table fileset (
    id int8 not null,
    permissions int8 not null,
    templatePrefix text not null,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    primary key (id)
);

create table filesetentry (
    id int8 not null,
    clientPath text not null,
    permissions int8 not null,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    fileset int8 not null,
    originalFile int8 not null,
    fileset_index int4 not null,
    primary key (id),
    unique (fileset, fileset_index)
);

-- Job subclasses are joined tables in 5.4: job holds the common columns, importjob,
-- uploadjob, metadataimportjob, pixeldatajob, thumbnailgenerationjob, indexingjob, ...
-- hold job_id. An FS import links an UploadJob (which carries the import log), a
-- MetadataImportJob, a PixelDataJob, a ThumbnailGenerationJob and an IndexingJob.
create table job (
    id int8 not null,
    permissions int8 not null,
    finished timestamp,
    groupname varchar(255) not null,
    message varchar(255) not null,
    scheduledFor timestamp not null,
    started timestamp,
    submitted timestamp not null,
    type varchar(255) not null,
    username varchar(255) not null,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    status int8 not null,
    primary key (id)
);

create table importjob (
    imageDescription text not null,
    imageName text not null,
    job_id int8 not null,
    primary key (job_id)
);

create table uploadjob (
    job_id int8 not null,
    primary key (job_id)
);

create table metadataimportjob (
    job_id int8 not null,
    primary key (job_id)
);

create table pixeldatajob (
    job_id int8 not null,
    primary key (job_id)
);

create table thumbnailgenerationjob (
    job_id int8 not null,
    primary key (job_id)
);

create table indexingjob (
    job_id int8 not null,
    primary key (job_id)
);

create table filesetjoblink (
    id int8 not null,
    permissions int8 not null,
    version int4,
    child int8 not null,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    parent int8 not null,
    parent_index int4 not null,
    primary key (id),
    unique (parent, child, owner_id),
    unique (parent, parent_index)
);

create table joboriginalfilelink (
    id int8 not null,
    permissions int8 not null,
    version int4,
    child int8 not null,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    parent int8 not null,
    primary key (id),
    unique (parent, child, owner_id)
);

------------------------------------------------------------------------------------------
-- Containers and images
------------------------------------------------------------------------------------------

create table project (
    id int8 not null,
    description text,
    permissions int8 not null,
    name text not null,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    primary key (id)
);

create table dataset (
    id int8 not null,
    description text,
    permissions int8 not null,
    name text not null,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    primary key (id)
);

create table image (
    id int8 not null,
    acquisitionDate timestamp,
    archived bool,
    description text,
    permissions int8 not null,
    name text not null,
    partial bool,
    series nonnegative_int,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    experiment int8,
    fileset int8,
    format int8,
    imagingEnvironment int8,
    instrument int8,
    objectiveSettings int8,
    stageLabel int8,
    primary key (id)
);

create table screen (
    id int8 not null,
    description text,
    permissions int8 not null,
    name text not null,
    protocolDescription text,
    protocolIdentifier varchar(255),
    reagentSetDescription text,
    reagentSetIdentifier varchar(255),
    type varchar(255),
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    primary key (id)
);

create table plate (
    id int8 not null,
    columnNamingConvention varchar(255),
    columns int4,
    defaultSample int4,
    description text,
    permissions int8 not null,
    externalIdentifier varchar(255),
    name text not null,
    rowNamingConvention varchar(255),
    "rows" int4,
    status text,
    version int4,
    wellOriginXUnit UnitsLength,
    wellOriginX float8,
    wellOriginYUnit UnitsLength,
    wellOriginY float8,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    primary key (id)
);

create table well (
    id int8 not null,
    alpha int4,
    blue int4,
    "column" int4,
    permissions int8 not null,
    externalDescription text,
    externalIdentifier varchar(255),
    green int4,
    red int4,
    "row" int4,
    status varchar(255),
    type varchar(255),
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    plate int8 not null,
    primary key (id)
);

create table wellsample (
    id int8 not null,
    permissions int8 not null,
    posXUnit UnitsLength,
    posX float8,
    posYUnit UnitsLength,
    posY float8,
    timepoint timestamp,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    image int8 not null,
    plateAcquisition int8,
    well int8 not null,
    well_index int4 not null,
    primary key (id),
    unique (well, well_index)
);

create table pixels (
    id int8 not null,
    permissions int8 not null,
    methodology varchar(255),
    physicalSizeXUnit UnitsLength,
    physicalSizeX float8,
    physicalSizeYUnit UnitsLength,
    physicalSizeY float8,
    physicalSizeZUnit UnitsLength,
    physicalSizeZ float8,
    sha1 varchar(255) not null,
    significantBits positive_int,
    sizeC positive_int not null,
    sizeT positive_int not null,
    sizeX positive_int not null,
    sizeY positive_int not null,
    sizeZ positive_int not null,
    timeIncrementUnit UnitsTime,
    timeIncrement float8,
    version int4,
    waveIncrement int4,
    waveStart int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    dimensionOrder int8 not null,
    image int8 not null,
    pixelsType int8 not null,
    relatedTo int8,
    image_index int4 not null,
    -- added by psql-footer.sql (ticket:2201): the file Bio-Formats opens for FS images
    path text,
    name text,
    repo varchar(36),
    primary key (id),
    unique (image, image_index)
);

create table thumbnail (
    id int8 not null,
    permissions int8 not null,
    mimeType varchar(255) not null,
    "ref" varchar(255),
    sizeX int4 not null,
    sizeY int4 not null,
    version int4,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    pixels int8 not null,
    primary key (id)
);

-- OMERO 4 archived originals: parent = originalfile, child = pixels.
create table pixelsoriginalfilemap (
    id int8 not null,
    permissions int8 not null,
    version int4,
    child int8 not null,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    parent int8 not null,
    primary key (id),
    unique (parent, child, owner_id)
);

------------------------------------------------------------------------------------------
-- Links between containers (parent, child)
------------------------------------------------------------------------------------------

create table projectdatasetlink (
    id int8 not null,
    permissions int8 not null,
    version int4,
    child int8 not null,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    parent int8 not null,
    primary key (id),
    unique (parent, child, owner_id)
);

create table datasetimagelink (
    id int8 not null,
    permissions int8 not null,
    version int4,
    child int8 not null,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    parent int8 not null,
    primary key (id),
    unique (parent, child, owner_id)
);

create table screenplatelink (
    id int8 not null,
    permissions int8 not null,
    version int4,
    child int8 not null,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    parent int8 not null,
    primary key (id),
    unique (parent, child, owner_id)
);

------------------------------------------------------------------------------------------
-- Annotations
------------------------------------------------------------------------------------------

-- One table for all annotation types; discriminator: '/type/OriginalFile/' FileAnnotation,
-- '/map/' MapAnnotation, '/basic/text/tag/' TagAnnotation, '/basic/text/comment/' ...
create table annotation (
    discriminator varchar(31) not null,
    id int8 not null,
    description text,
    permissions int8 not null,
    name text,
    ns text,
    version int4,
    boolValue bool,
    textValue text,
    doubleValue float8,
    longValue int8,
    termValue text,
    timeValue timestamp,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    "file" int8,
    primary key (id)
);

-- OMERO's DDL spells it annotation_mapValue (unquoted, so annotation_mapvalue).
create table annotation_mapValue (
    annotation_id int8 not null,
    name varchar(255) not null,
    value varchar(255) not null,
    index int4 not null,
    primary key (annotation_id, index)
);

create table projectannotationlink (
    id int8 not null,
    permissions int8 not null,
    version int4,
    child int8 not null,
    creation_id int8 not null,
    external_id int8 unique,
    group_id int8 not null,
    owner_id int8 not null,
    update_id int8 not null,
    parent int8 not null,
    primary key (id),
    unique (parent, child, owner_id)
);

-- The other annotation links have exactly projectannotationlink's columns and constraints.
create table datasetannotationlink (like projectannotationlink including all);
create table imageannotationlink (like projectannotationlink including all);
create table screenannotationlink (like projectannotationlink including all);
create table plateannotationlink (like projectannotationlink including all);
create table wellannotationlink (like projectannotationlink including all);
create table filesetannotationlink (like projectannotationlink including all);

------------------------------------------------------------------------------------------
-- Bookkeeping tables of psql-footer.sql
------------------------------------------------------------------------------------------

create table dbpatch (
    id int8 not null,
    currentPatch int4 not null,
    currentVersion varchar(255) not null,
    permissions int8 not null,
    finished timestamp,
    message varchar(255),
    previousPatch int4 not null,
    previousVersion varchar(255) not null,
    external_id int8 unique,
    primary key (id)
);

create table configuration ( name varchar(255) primary key, value text );

CREATE TABLE _roles (
    root_user_id BIGINT NOT NULL,
    guest_user_id BIGINT NOT NULL,
    system_group_id BIGINT NOT NULL,
    user_group_id BIGINT NOT NULL,
    guest_group_id BIGINT NOT NULL
);

------------------------------------------------------------------------------------------
-- Foreign keys (OMERO's constraint names)
------------------------------------------------------------------------------------------

-- The details block: owner, group, creation and update events.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['originalfile', 'fileset', 'filesetentry', 'job',
        'filesetjoblink', 'joboriginalfilelink', 'project', 'dataset', 'image', 'screen',
        'plate', 'well', 'wellsample', 'pixels', 'thumbnail', 'pixelsoriginalfilemap',
        'projectdatasetlink', 'datasetimagelink', 'screenplatelink', 'annotation',
        'projectannotationlink', 'datasetannotationlink', 'imageannotationlink',
        'screenannotationlink', 'plateannotationlink', 'wellannotationlink',
        'filesetannotationlink']
    LOOP
        EXECUTE format('alter table %1$I add constraint %2$I foreign key (owner_id) references experimenter',
                       t, 'FK' || t || '_owner_id_experimenter');
        EXECUTE format('alter table %1$I add constraint %2$I foreign key (group_id) references experimentergroup',
                       t, 'FK' || t || '_group_id_experimentergroup');
        EXECUTE format('alter table %1$I add constraint %2$I foreign key (creation_id) references event',
                       t, 'FK' || t || '_creation_id_event');
        EXECUTE format('alter table %1$I add constraint %2$I foreign key (update_id) references event',
                       t, 'FK' || t || '_update_id_event');
    END LOOP;
END $$;

alter table groupexperimentermap add constraint FKgroupexperimentermap_parent_experimentergroup
    foreign key (parent) references experimentergroup;
alter table groupexperimentermap add constraint FKgroupexperimentermap_child_experimenter
    foreign key (child) references experimenter;

alter table session add constraint FKsession_node_node foreign key (node) references node;
alter table session add constraint FKsession_owner_experimenter foreign key (owner) references experimenter;
alter table session add constraint FKsession_sudoer_experimenter foreign key (sudoer) references experimenter;

alter table event add constraint FKevent_experimenter_experimenter
    foreign key (experimenter) references experimenter;
alter table event add constraint FKevent_experimenterGroup_experimentergroup
    foreign key (experimenterGroup) references experimentergroup;
alter table event add constraint FKevent_session_session foreign key ("session") references session;
alter table event add constraint FKevent_type_eventtype foreign key (type) references eventtype;
alter table event add constraint FKevent_containingEvent_event
    foreign key (containingEvent) references event;

alter table originalfile add constraint FKoriginalfile_hasher_checksumalgorithm
    foreign key (hasher) references checksumalgorithm;

alter table filesetentry add constraint FKfilesetentry_fileset_fileset
    foreign key (fileset) references fileset;
alter table filesetentry add constraint FKfilesetentry_originalFile_originalfile
    foreign key (originalFile) references originalfile;

alter table job add constraint FKjob_status_jobstatus foreign key (status) references jobstatus;
alter table importjob add constraint FKimportjob_job_id_job foreign key (job_id) references job;
alter table uploadjob add constraint FKuploadjob_job_id_job foreign key (job_id) references job;
alter table metadataimportjob add constraint FKmetadataimportjob_job_id_job
    foreign key (job_id) references job;
alter table pixeldatajob add constraint FKpixeldatajob_job_id_job foreign key (job_id) references job;
alter table thumbnailgenerationjob add constraint FKthumbnailgenerationjob_job_id_job
    foreign key (job_id) references job;
alter table indexingjob add constraint FKindexingjob_job_id_job foreign key (job_id) references job;

alter table filesetjoblink add constraint FKfilesetjoblink_parent_fileset
    foreign key (parent) references fileset;
alter table filesetjoblink add constraint FKfilesetjoblink_child_job
    foreign key (child) references job;
alter table joboriginalfilelink add constraint FKjoboriginalfilelink_parent_job
    foreign key (parent) references job;
alter table joboriginalfilelink add constraint FKjoboriginalfilelink_child_originalfile
    foreign key (child) references originalfile;

alter table image add constraint FKimage_fileset_fileset foreign key (fileset) references fileset;

alter table well add constraint FKwell_plate_plate foreign key (plate) references plate;
alter table wellsample add constraint FKwellsample_well_well foreign key (well) references well;
alter table wellsample add constraint FKwellsample_image_image foreign key (image) references image;

alter table pixels add constraint FKpixels_image_image foreign key (image) references image;
alter table pixels add constraint FKpixels_pixelsType_pixelstype
    foreign key (pixelsType) references pixelstype;
alter table pixels add constraint FKpixels_dimensionOrder_dimensionorder
    foreign key (dimensionOrder) references dimensionorder;
alter table pixels add constraint FKpixels_relatedTo_pixels foreign key (relatedTo) references pixels;

alter table thumbnail add constraint FKthumbnail_pixels_pixels foreign key (pixels) references pixels;

alter table pixelsoriginalfilemap add constraint FKpixelsoriginalfilemap_parent_originalfile
    foreign key (parent) references originalfile;
alter table pixelsoriginalfilemap add constraint FKpixelsoriginalfilemap_child_pixels
    foreign key (child) references pixels;

alter table projectdatasetlink add constraint FKprojectdatasetlink_parent_project
    foreign key (parent) references project;
alter table projectdatasetlink add constraint FKprojectdatasetlink_child_dataset
    foreign key (child) references dataset;
alter table datasetimagelink add constraint FKdatasetimagelink_parent_dataset
    foreign key (parent) references dataset;
alter table datasetimagelink add constraint FKdatasetimagelink_child_image
    foreign key (child) references image;
alter table screenplatelink add constraint FKscreenplatelink_parent_screen
    foreign key (parent) references screen;
alter table screenplatelink add constraint FKscreenplatelink_child_plate
    foreign key (child) references plate;

alter table annotation add constraint FKfileannotation_file_originalfile
    foreign key ("file") references originalfile;
alter table annotation_mapValue add constraint FKannotation_mapValue_map
    foreign key (annotation_id) references annotation;

alter table projectannotationlink add constraint FKprojectannotationlink_parent_project
    foreign key (parent) references project;
alter table projectannotationlink add constraint FKprojectannotationlink_child_annotation
    foreign key (child) references annotation;
alter table datasetannotationlink add constraint FKdatasetannotationlink_parent_dataset
    foreign key (parent) references dataset;
alter table datasetannotationlink add constraint FKdatasetannotationlink_child_annotation
    foreign key (child) references annotation;
alter table imageannotationlink add constraint FKimageannotationlink_parent_image
    foreign key (parent) references image;
alter table imageannotationlink add constraint FKimageannotationlink_child_annotation
    foreign key (child) references annotation;
alter table screenannotationlink add constraint FKscreenannotationlink_parent_screen
    foreign key (parent) references screen;
alter table screenannotationlink add constraint FKscreenannotationlink_child_annotation
    foreign key (child) references annotation;
alter table plateannotationlink add constraint FKplateannotationlink_parent_plate
    foreign key (parent) references plate;
alter table plateannotationlink add constraint FKplateannotationlink_child_annotation
    foreign key (child) references annotation;
alter table wellannotationlink add constraint FKwellannotationlink_parent_well
    foreign key (parent) references well;
alter table wellannotationlink add constraint FKwellannotationlink_child_annotation
    foreign key (child) references annotation;
alter table filesetannotationlink add constraint FKfilesetannotationlink_parent_fileset
    foreign key (parent) references fileset;
alter table filesetannotationlink add constraint FKfilesetannotationlink_child_annotation
    foreign key (child) references annotation;

------------------------------------------------------------------------------------------
-- Indexes: OMERO's i_<Table>_<column> on the foreign keys the app walks, and the
-- special indexes of psql-footer.sql.
------------------------------------------------------------------------------------------

CREATE INDEX i_Image_fileset ON image(fileset);
CREATE INDEX i_image_owner ON image(owner_id);
CREATE INDEX i_image_group ON image(group_id);
CREATE INDEX i_project_owner ON project(owner_id);
CREATE INDEX i_project_group ON project(group_id);
CREATE INDEX i_screen_owner ON screen(owner_id);
CREATE INDEX i_screen_group ON screen(group_id);
CREATE INDEX i_FilesetEntry_fileset ON filesetentry(fileset);
CREATE INDEX i_FilesetEntry_originalFile ON filesetentry(originalFile);
CREATE INDEX i_FilesetJobLink_parent ON filesetjoblink(parent);
CREATE INDEX i_FilesetJobLink_child ON filesetjoblink(child);
CREATE INDEX i_JobOriginalFileLink_parent ON joboriginalfilelink(parent);
CREATE INDEX i_JobOriginalFileLink_child ON joboriginalfilelink(child);
CREATE INDEX i_ProjectDatasetLink_parent ON projectdatasetlink(parent);
CREATE INDEX i_ProjectDatasetLink_child ON projectdatasetlink(child);
CREATE INDEX i_DatasetImageLink_parent ON datasetimagelink(parent);
CREATE INDEX i_DatasetImageLink_child ON datasetimagelink(child);
CREATE INDEX i_ScreenPlateLink_parent ON screenplatelink(parent);
CREATE INDEX i_ScreenPlateLink_child ON screenplatelink(child);
CREATE INDEX i_Well_plate ON well(plate);
CREATE INDEX i_WellSample_well ON wellsample(well);
CREATE INDEX i_WellSample_image ON wellsample(image);
CREATE INDEX i_Pixels_image ON pixels(image);
CREATE INDEX i_Thumbnail_pixels ON thumbnail(pixels);
CREATE INDEX i_PixelsOriginalFileMap_parent ON pixelsoriginalfilemap(parent);
CREATE INDEX i_PixelsOriginalFileMap_child ON pixelsoriginalfilemap(child);
CREATE INDEX i_ProjectAnnotationLink_parent ON projectannotationlink(parent);
CREATE INDEX i_DatasetAnnotationLink_parent ON datasetannotationlink(parent);
CREATE INDEX i_ImageAnnotationLink_parent ON imageannotationlink(parent);
CREATE INDEX i_ScreenAnnotationLink_parent ON screenannotationlink(parent);
CREATE INDEX i_PlateAnnotationLink_parent ON plateannotationlink(parent);
CREATE INDEX i_WellAnnotationLink_parent ON wellannotationlink(parent);
CREATE INDEX i_FileAnnotation_file ON annotation("file");
CREATE INDEX i_Event_experimenter ON event(experimenter);

create index pixels_repo_index on pixels (repo);
create index originalfile_mime_index on originalfile (mimetype);
create index originalfile_path_index on originalfile (path);
create index originalfile_repo_index on originalfile (repo);
create index originalfile_hash_index on originalfile (hash);
-- protect against 2017-SV5: one row per path in a repository
CREATE UNIQUE INDEX originalfile_repo_path_index ON originalfile
    (repo, regexp_split_to_array('/' || path || name || '/', '/+'))
    WHERE repo IS NOT NULL;
create unique index well_col_row on well (plate, "column", "row");
create index annotation_discriminator on annotation(discriminator);
create index annotation_ns on annotation(ns);

------------------------------------------------------------------------------------------
-- The change log (schema.sql's eventlog; psql-footer.sql's seq_eventlog and indexes).
-- OMERO writes a row per INSERT/UPDATE/DELETE its Hibernate listener sees
-- (ome.security.basic.EventLogListener) and REINDEX rows from _reindexing_required;
-- docs/eventlog.md says which changes get a row and which do not.
------------------------------------------------------------------------------------------

create table eventlog (
    id int8 not null,
    action varchar(255) not null,
    permissions int8 not null,
    entityId int8 not null,
    entityType varchar(255) not null,
    external_id int8 unique,
    event int8 not null,
    primary key (id),
    constraint FKeventlog_event_event foreign key (event) references event
);
CREATE INDEX i_EventLog_event ON eventlog(event);
CREATE INDEX eventlog_action ON eventlog(action);
CREATE INDEX eventlog_entitytype ON eventlog(entityType);
CREATE INDEX eventlog_entityid ON eventlog(entityId);

------------------------------------------------------------------------------------------
-- Sequences: OMERO allocates ids with ome_nextval('seq_<table>'), a locked nextval().
------------------------------------------------------------------------------------------

CREATE SEQUENCE seq_annotation;
CREATE SEQUENCE seq_checksumalgorithm;
CREATE SEQUENCE seq_dataset;
CREATE SEQUENCE seq_datasetannotationlink;
CREATE SEQUENCE seq_datasetimagelink;
CREATE SEQUENCE seq_dbpatch;
CREATE SEQUENCE seq_dimensionorder;
CREATE SEQUENCE seq_event;
CREATE SEQUENCE seq_eventlog;
CREATE SEQUENCE seq_eventtype;
CREATE SEQUENCE seq_experimenter;
CREATE SEQUENCE seq_experimentergroup;
CREATE SEQUENCE seq_fileset;
CREATE SEQUENCE seq_filesetannotationlink;
CREATE SEQUENCE seq_filesetentry;
CREATE SEQUENCE seq_filesetjoblink;
CREATE SEQUENCE seq_groupexperimentermap;
CREATE SEQUENCE seq_image;
CREATE SEQUENCE seq_imageannotationlink;
CREATE SEQUENCE seq_job;
CREATE SEQUENCE seq_joboriginalfilelink;
CREATE SEQUENCE seq_jobstatus;
CREATE SEQUENCE seq_node;
CREATE SEQUENCE seq_originalfile;
CREATE SEQUENCE seq_pixels;
CREATE SEQUENCE seq_pixelsoriginalfilemap;
CREATE SEQUENCE seq_pixelstype;
CREATE SEQUENCE seq_plate;
CREATE SEQUENCE seq_plateannotationlink;
CREATE SEQUENCE seq_project;
CREATE SEQUENCE seq_projectannotationlink;
CREATE SEQUENCE seq_projectdatasetlink;
CREATE SEQUENCE seq_screen;
CREATE SEQUENCE seq_screenannotationlink;
CREATE SEQUENCE seq_screenplatelink;
CREATE SEQUENCE seq_session;
CREATE SEQUENCE seq_thumbnail;
CREATE SEQUENCE seq_well;
CREATE SEQUENCE seq_wellannotationlink;
CREATE SEQUENCE seq_wellsample;

-- OMERO's ome_nextval() takes an advisory lock around nextval() (for Hibernate); a
-- plain nextval() gives the same ids for a stand-in writer.
CREATE OR REPLACE FUNCTION ome_nextval(seq VARCHAR, increment int4) RETURNS INT8 AS $$
DECLARE
    nv int8;
BEGIN
    PERFORM nextval(seq) FROM generate_series(1, increment);
    SELECT currval(seq) INTO nv;
    RETURN nv;
END;$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION ome_nextval(seq VARCHAR) RETURNS INT8 AS $$
BEGIN
    RETURN ome_nextval(seq, 1);
END;$$ LANGUAGE plpgsql;

-- select id, ome_perms(permissions) from experimentergroup: 'rwra--' and so on.
CREATE OR REPLACE FUNCTION ome_perms(p INT8) RETURNS VARCHAR AS $$
BEGIN
    RETURN (CASE WHEN (p & 1024) = 1024 THEN 'r' ELSE '-' END)
        || (CASE WHEN (p & 512) = 512 THEN 'w' WHEN (p & 256) = 256 THEN 'a' ELSE '-' END)
        || (CASE WHEN (p & 64) = 64 THEN 'r' ELSE '-' END)
        || (CASE WHEN (p & 32) = 32 THEN 'w' WHEN (p & 16) = 16 THEN 'a' ELSE '-' END)
        || (CASE WHEN (p & 4) = 4 THEN 'r' ELSE '-' END)
        || (CASE WHEN (p & 2) = 2 THEN 'w' WHEN (p & 1) = 1 THEN 'a' ELSE '-' END);
END;$$ LANGUAGE plpgsql;
