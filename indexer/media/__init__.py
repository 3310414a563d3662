"""Probe video files and sample frames from them (every N seconds, key frames only, or per shot).

Decoding is PyAV (FFmpeg) throughout: it gives exact presentation timestamps and per-packet
key-frame flags, which OpenCV's ``VideoCapture`` hides; OpenCV's own seeking is also wrong on
some files (asked for 12 s of tree.avi it lands at 19 s). OpenCV is used only for pixel work on
decoded arrays, where it is the better tool: ``INTER_AREA`` downscaling (an exact box filter)
and the HSV conversion of the shot detector (the same hue scale as PySceneDetect's
ContentDetector, so its thresholds mean the same here).

Times are seconds from the first video frame of the file (the video stream's start time): the
first picture is at ``time_s == 0`` whatever clock the container uses (MPEG-TS starts at 1.4 s or
anywhere). Time ranges (``start_s``/``end_s``) are in the same file-relative seconds.

Errors: anything wrong with a file (missing, empty, not a video, truncated, corrupt) raises
:class:`MediaError` with one line naming the file and the problem, so a batch job can record the
reason and move on.

Modules, one job each: ``types`` (MediaError, MediaInfo, Shot, Frame), ``source`` (opening a
file, one open stream with its clock), ``probing``, ``cursor`` (moving through frames),
``checks`` (arguments and ranges), ``sampling`` (the public API, ``interval`` and
``keyframes``), ``shots`` (shot detection and per-shot sampling).
"""

from indexer.media.probing import probe
from indexer.media.sampling import Sampler, sample_frames
from indexer.media.shots import detect_shots
from indexer.media.source import set_decode_threads
from indexer.media.types import Frame, MediaError, MediaInfo, Shot

__all__ = ["Frame", "MediaError", "MediaInfo", "Sampler", "Shot", "detect_shots", "probe",
           "sample_frames", "set_decode_threads"]
