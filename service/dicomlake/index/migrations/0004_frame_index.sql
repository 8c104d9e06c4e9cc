-- Frame offset index of encapsulated (compressed) pixel data, recorded at store time so that
-- WADO-RS frames are ranged reads of the blob. Native pixel data needs no row: its frames are
-- computed from instances.pixel_data. Packed format: see dicomlake/dicom/frames.py.
-- Instances committed before this migration have no row (served by a slower path, see conformance.md).
CREATE TABLE instance_frames (
    watermark bigint PRIMARY KEY REFERENCES instances (watermark) ON DELETE CASCADE,
    frame_count integer NOT NULL,
    fragments bytea NOT NULL
);
