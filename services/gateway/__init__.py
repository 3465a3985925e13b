"""The HTTP gateway: JSON API, run events over WebSocket, and the operators' dashboard."""
