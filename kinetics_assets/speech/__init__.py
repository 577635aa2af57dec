"""Speech: voice-activity detection and Whisper transcription of a clip's audio."""
