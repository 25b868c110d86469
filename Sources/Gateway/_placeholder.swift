public enum _PlaceholderGateway {}
