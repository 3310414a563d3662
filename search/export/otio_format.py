"""OpenTimelineIO (``.otio``), written with the ``opentimelineio`` library.

A timeline named after the export with one video track: one clip per shot, whose media
reference is an ``ExternalReference`` to the episode's media (path or URL) with the episode's
available range (from its start timecode, for its length) and whose source range is the shot,
both as ``RationalTime`` at the episode's rate (frame counts of its timecode, so
``to_timecode`` gives the labels the other formats show). Clip metadata under ``tvindex``:
episode, programme, shot id, score, labels, rate, drop-frame, timecodes in/out.
"""

from __future__ import annotations

from pathlib import Path

from search.export.base import Clip, ClipList, Exporter


def media_url(media: str) -> str:
    """A URL for the media: URLs as they are, absolute paths as ``file://`` URLs."""
    if "://" in media:
        return media
    path = Path(media)
    return path.as_uri() if path.is_absolute() else media


class OtioExporter(Exporter):
    name = "otio"
    media_type = "application/vnd.opentimelineio+json"
    extension = "otio"

    def render(self, clips: ClipList) -> bytes:
        import opentimelineio as otio

        timeline = otio.schema.Timeline(name=clips.title)
        timeline.metadata["tvindex"] = {"kind": clips.kind, "query": clips.query,
                                        "episode_id": clips.episode_id}
        track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
        timeline.tracks.append(track)
        for clip in clips.clips:
            track.append(_clip(otio, clip))
        return otio.adapters.write_to_string(timeline, "otio_json").encode("utf-8")


def _clip(otio, clip: Clip):
    rate = float(clip.rate)
    start = clip.clock.timebase.start_frames  # the episode's first frame as a frame count

    def at(frames: int):
        return otio.opentime.RationalTime(frames, rate)

    reference = otio.schema.ExternalReference(
        target_url=media_url(clip.media),
        available_range=otio.opentime.TimeRange(at(start), at(clip.episode_frames)))
    item = otio.schema.Clip(
        name=clip.shot_id, media_reference=reference,
        source_range=otio.opentime.TimeRange(at(start + clip.in_frame),
                                             at(clip.duration_frames)))
    item.metadata["tvindex"] = {
        "shot_id": clip.shot_id, "episode_id": clip.episode_id,
        "episode_title": clip.episode_title, "programme_id": clip.programme_id,
        "programme_title": clip.programme_title, "score": clip.score,
        "labels": list(clip.labels), "frame_rate": clip.to_dict()["frame_rate"],
        "drop_frame": clip.clock.drop_frame, "vfr": clip.clock.vfr,
        "tc_in": clip.tc_in, "tc_out": clip.tc_out,
        "start_s": clip.start_s, "end_s": clip.end_s,
    }
    return item
