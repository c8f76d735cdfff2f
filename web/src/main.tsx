import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { ApiClient } from './api/client';
import { App } from './App';
import { loadConfig } from './context';
import './styles.css';

async function start() {
  const config = await loadConfig();
  const root = document.getElementById('root');
  if (!root) throw new Error('#root is missing');
  createRoot(root).render(
    <StrictMode>
      <App client={new ApiClient()} config={config} />
    </StrictMode>,
  );
}

void start();
