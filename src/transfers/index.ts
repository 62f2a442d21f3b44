export { createTransferService, fileContext, type TransferService, type TransferView, type OpenedTransfer, type SenderSession } from './transfers.service.js';
export { registerTransferRoutes } from './transfers.routes.js';
