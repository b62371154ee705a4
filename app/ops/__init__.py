"""Operations: health, readiness, metrics and the offline API docs."""
